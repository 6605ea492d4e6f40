/**
 * Which encodes `execution.provider` hands to latentwatch's CUDA encoder,
 * and what an encoder says when it could not start. On a machine without
 * an NVIDIA GPU (CI) the fallbacks run; with one, the CUDA encoder itself,
 * against the f64 reference.
 */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { EncoderConfigError } from "../core/encoder_checks.ts";
import { randomSae } from "../formats/random_sae.ts";
import { cudaAvailability, cudaEncoderTakes, tryCudaEncoder, withCudaNote } from "./cuda_choice.ts";
import { createOrtEncoder } from "./ort_encoder.ts";
import type { ProviderReport } from "./provider.ts";
import { assertMatchesReference } from "./testdata/gpu_reference.ts";

const JUMPRELU = randomSae({ architecture: "jumprelu", dIn: 48, dSae: 200, seed: 21 });
const TOPK = randomSae({ architecture: "topk", dIn: 48, dSae: 200, seed: 22, k: 8 });
const GATED = randomSae({ architecture: "gated", dIn: 48, dSae: 200, seed: 23 });
const STANDARD = randomSae({ architecture: "standard", dIn: 48, dSae: 200, seed: 24 });

Deno.test("cuda choice: full encodes of standard and JumpReLU SAEs under auto or cuda, nothing else", () => {
  for (const setting of ["auto", "cuda"] as const) {
    assert.equal(cudaEncoderTakes(JUMPRELU, setting), true, setting);
    assert.equal(cudaEncoderTakes(STANDARD, setting), true, setting);
    assert.equal(cudaEncoderTakes(TOPK, setting), false, `${setting}: TopK stays on onnxruntime`);
    assert.equal(cudaEncoderTakes(GATED, setting), false, `${setting}: gated stays on onnxruntime`);
    // a watched encode computes a few columns: the CPU does that for nothing
    assert.equal(cudaEncoderTakes(JUMPRELU, setting, new Uint32Array([1, 5])), false);
    // a watch on TopK saves no work (every latent is ranked), but TopK is not the CUDA encoder's
    assert.equal(cudaEncoderTakes(TOPK, setting, new Uint32Array([1])), false);
  }
  for (const setting of ["cpu", "webgpu"] as const) {
    assert.equal(cudaEncoderTakes(JUMPRELU, setting), false, setting);
  }
});

Deno.test("cuda choice: the note names the CUDA encoder first when cuda was asked for, or when CUDA is there and it failed", () => {
  const report = {
    provider: "cpu" as const,
    providerNote: "cuda could not start: no provider libraries; running on cpu",
    providerFallback: false,
  };
  const noDriver = {
    reason: "cannot load the CUDA driver (tried libcuda.so.1)",
    unavailable: true,
  };
  const named = withCudaNote(report, "cuda", noDriver);
  assert.equal(
    named.providerNote,
    "cuda-ffi could not start: cannot load the CUDA driver (tried libcuda.so.1); " +
      "cuda could not start: no provider libraries; running on cpu",
  );
  assert.equal(named.providerFallback, true);
  // auto on a machine without usable CUDA: quiet, as for onnxruntime's providers
  assert.deepEqual(withCudaNote(report, "auto", noDriver), report);
  // auto where CUDA is there but the encoder failed (out of device memory): worth a warning
  const oom = {
    reason: "cuMemAlloc 536870912 bytes: CUDA_ERROR_OUT_OF_MEMORY",
    unavailable: false,
  };
  const loud = withCudaNote(report, "auto", oom);
  assert.ok(loud.providerNote!.startsWith(`cuda-ffi could not start: ${oom.reason}; cuda could`));
  assert.equal(loud.providerFallback, true);
  // a report without a note of its own (the next provider started): where it runs instead
  const started: ProviderReport = { provider: "cuda", providerFallback: false };
  assert.equal(
    withCudaNote(started, "cuda", noDriver).providerNote,
    `cuda-ffi could not start: ${noDriver.reason}; running on cuda`,
  );
  const cpu: ProviderReport = { provider: "cpu", providerFallback: false };
  assert.equal(
    withCudaNote(cpu, "cuda", { reason: "x", unavailable: true }).providerNote,
    "cuda-ffi could not start: x; running on cpu",
  );
});

Deno.test("cuda choice: an SAE the CUDA encoder does not take is a reason, not a crash; a broken SAE is refused as on the CPU", async () => {
  const refused = tryCudaEncoder(GATED);
  assert.ok("reason" in refused);
  assert.match(refused.reason, /standard and JumpReLU SAEs, found gated/);
  assert.equal(refused.unavailable, false);
  // a b_enc of the wrong length: the same EncoderConfigError under auto as under cpu, before any
  // upload (without a GPU the graph's own check refuses it too; with one, only the CUDA path's does)
  const broken = { ...JUMPRELU, bEnc: JUMPRELU.bEnc.subarray(0, 10) };
  for (const provider of ["auto", "cpu"] as const) {
    await assert.rejects(
      () => createOrtEncoder(broken, { provider }),
      EncoderConfigError,
      provider,
    );
  }
});

Deno.test("cuda choice: createOrtEncoder runs a JumpReLU full encode on the CUDA encoder where one starts, else says why", async () => {
  const x = new Rng(5).fillGaussian(new Float32Array(16 * 48), 2);
  const cuda = cudaAvailability();
  for (const setting of ["auto", "cuda"] as const) {
    const enc = await createOrtEncoder(JUMPRELU, { provider: setting });
    try {
      if (cuda.available) {
        assert.equal(enc.provider, "cuda");
        assert.equal((enc as { engine?: string }).engine, "cuda-ffi", setting);
      } else {
        assert.match(cuda.reason!, /CUDA|cuBLAS|NVRTC/);
        assert.notEqual((enc as { engine?: string }).engine, "cuda-ffi");
        if (setting === "cuda") {
          assert.equal(enc.providerFallback, true);
          assert.ok(enc.providerNote!.startsWith(`cuda-ffi could not start: ${cuda.reason}; `));
        } else {
          assert.ok(!(enc.providerNote ?? "").includes("cuda-ffi"), enc.providerNote);
        }
      }
      // wherever it runs, the latents are the f64 reference's
      assert.ok(assertMatchesReference(JUMPRELU, x, 16, await enc.encode(x, 16)) > 0);
    } finally {
      await enc.close();
    }
  }
  // tryCudaEncoder agrees with the availability check
  const tried = tryCudaEncoder(STANDARD);
  if ("encoder" in tried) await tried.encoder.close();
  assert.equal("encoder" in tried, cuda.available);
});
