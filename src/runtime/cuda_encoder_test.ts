/**
 * The CUDA encoder. Where an NVIDIA GPU and its libraries are present, it
 * is compared with the plain-TypeScript f64 reference encoder (the same
 * cases as the WebGPU encoder's); everywhere else the tests check that it
 * refuses to start with a `CudaUnavailableError` naming what it looked for,
 * and that configuration errors come before any library is loaded.
 */
import assert from "node:assert/strict";
import { randomSae } from "../formats/random_sae.ts";
import { assertMatchesReference, gaussianInput, oddSaes } from "./testdata/gpu_reference.ts";
import { createCudaEncoder, CudaEncoderConfigError } from "./cuda_encoder.ts";
import { cudaLibraryDirs, cudaRuntime, CudaUnavailableError } from "./cuda_ffi.ts";

let available: string | null = null;
let unavailable: CudaUnavailableError | null = null;
try {
  available = cudaRuntime().device.name;
} catch (e) {
  if (!(e instanceof CudaUnavailableError)) throw e;
  unavailable = e;
}
const onGpu = { ignore: available === null };

Deno.test("cuda: library folders come from LATENTWATCH_CUDA_LIBS, CUDA_HOME, then the toolkit's", () => {
  const env = new Map([["LATENTWATCH_CUDA_LIBS", "/a/lib::/b/lib"], ["CUDA_HOME", "/opt/cuda"]]);
  assert.deepEqual(cudaLibraryDirs((n) => env.get(n)), [
    "/a/lib",
    "/b/lib",
    "/opt/cuda/lib64",
    "/usr/local/cuda/lib64",
  ]);
  assert.deepEqual(cudaLibraryDirs(() => undefined), ["/usr/local/cuda/lib64"]);
});

Deno.test("cuda: TopK and a bad maxRows are refused before CUDA is touched", () => {
  const topk = randomSae({ architecture: "topk", dIn: 16, dSae: 64, k: 4, seed: 1 });
  assert.throws(
    () => createCudaEncoder(topk),
    (e) => e instanceof CudaEncoderConfigError && e.message.includes("found topk"),
  );
  const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
  for (const maxRows of [0, -5, 1.5]) {
    assert.throws(
      () => createCudaEncoder(sae, { maxRows }),
      (e) => e instanceof CudaEncoderConfigError && e.message.includes(`found ${maxRows}`),
    );
  }
});

Deno.test({
  name: "cuda: without a driver, a CudaUnavailableError says what was looked for",
  ignore: available !== null,
  fn() {
    assert(unavailable);
    assert.match(unavailable.message, /libcuda\.so\.1|cuInit|no device/);
    const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
    // the same answer again, from the remembered failure, not a second search
    assert.throws(() => createCudaEncoder(sae), (e) => e === unavailable);
  },
});

Deno.test({
  name:
    "cuda: JumpReLU with b_dec, ReLU, odd widths and both normalisations match the f64 reference",
  ...onGpu,
  async fn() {
    const cases = [
      randomSae({ architecture: "jumprelu", dIn: 48, dSae: 384, seed: 3 }),
      ...oddSaes(),
    ];
    for (const sae of cases) {
      const x = gaussianInput(150, sae.dIn, 8, 3);
      const enc = createCudaEncoder(sae, { maxRows: 256 });
      try {
        const active = assertMatchesReference(sae, x, 150, await enc.encode(x, 150));
        assert(active > 150, `${sae.architecture} ${sae.dIn}: some latents are active (${active})`);
      } finally {
        await enc.close();
      }
    }
  },
});

Deno.test({
  name: "cuda: a token past the cap is compacted again; batches split past maxRows",
  ...onGpu,
  async fn() {
    const sae = randomSae({ architecture: "standard", dIn: 32, dSae: 512, seed: 9 });
    const x = gaussianInput(300, 32, 10);
    const enc = createCudaEncoder(sae, { maxRows: 128, cap: 4 });
    try {
      const got = await enc.encode(x, 300);
      assert(got.some((l) => l.indices.length > 4), "some token has more than 4 active latents");
      assertMatchesReference(sae, x, 300, got);
      assert.deepEqual(enc.stats(), { batches: 3, tokens: 300, recompactions: 3 });
      assert.deepEqual((await enc.encode(x, 0)).length, 0);
      await assert.rejects(() => enc.encode(new Float32Array(20), 2), /2 × 32 = 64/);
      assert(enc.timeKernels(64, 3) > 0);
    } finally {
      await enc.close();
    }
    await assert.rejects(() => enc.encode(x, 1), /closed/);
  },
});
