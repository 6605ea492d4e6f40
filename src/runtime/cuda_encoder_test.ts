/**
 * The CUDA encoder. Where an NVIDIA GPU and its libraries are present, it
 * is compared with the plain-TypeScript f64 reference encoder (the same
 * cases as the WebGPU encoder's); everywhere else the tests check that it
 * refuses to start with a `CudaUnavailableError` naming what it looked for,
 * and that configuration errors come before any library is loaded.
 */
import assert from "node:assert/strict";
import { randomSae } from "../formats/random_sae.ts";
import { referencePreActivations } from "../core/reference_encoder.ts";
import { assertMatchesReference, gaussianInput, oddSaes } from "./testdata/gpu_reference.ts";
import { createCudaEncoder, CudaEncoderConfigError } from "./cuda_encoder.ts";
import { segmentsFor } from "./cuda_kernels.ts";
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

Deno.test("cuda: TopK, a bad maxRows or cap and an unknown precision are refused before CUDA is touched", () => {
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
  for (const cap of [0, Number.NaN, 5.5]) {
    assert.throws(
      () => createCudaEncoder(sae, { cap }),
      (e) => e instanceof CudaEncoderConfigError && e.message.includes(`found ${cap}`),
    );
  }
  assert.throws(
    () => createCudaEncoder(sae, { precision: "tf32" as "f32" }),
    (e) => e instanceof CudaEncoderConfigError && e.message.includes("found tf32"),
  );
});

Deno.test({
  name:
    "cuda: without a driver (or cuBLAS, or NVRTC), a CudaUnavailableError says what was looked for",
  ignore: available !== null,
  fn() {
    assert(unavailable);
    assert.match(unavailable.message, /libcuda\.so\.1|cuInit|no device|cannot load (cuBLAS|NVRTC)/);
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
      for (const precision of ["f32", "bf16x3", "auto"] as const) {
        const enc = createCudaEncoder(sae, { maxRows: 256, precision });
        try {
          const active = assertMatchesReference(sae, x, 150, await enc.encode(x, 150));
          const what = `${precision} ${sae.architecture} ${sae.dIn}`;
          assert(active > 150, `${what}: some latents are active (${active})`);
          if (precision === "bf16x3") {
            const { candidates } = enc.stats();
            assert(candidates >= active, `${what}: every active latent was a candidate`);
          }
        } finally {
          await enc.close();
        }
      }
    }
  },
});

Deno.test({
  name:
    "cuda: a token past the cap is compacted again (in segments and in one pass, both precisions); batches split past maxRows",
  ...onGpu,
  async fn() {
    // 512 latents in 128-token batches run in two segments per token, 203 in one pass
    for (const dSae of [512, 203]) {
      const sae = randomSae({ architecture: "standard", dIn: 32, dSae, seed: 9 });
      const x = gaussianInput(300, 32, 10);
      for (const precision of ["f32", "bf16x3"] as const) {
        const what = `${dSae} latents, ${precision}`;
        assert.equal(segmentsFor(128, dSae).segs, dSae === 512 ? 2 : 1, what);
        const enc = createCudaEncoder(sae, { maxRows: 128, cap: 4, precision });
        try {
          const got = await enc.encode(x, 300);
          assert(got.some((l) => l.indices.length > 4), `${what}: a token past 4 latents`);
          assertMatchesReference(sae, x, 300, got);
          const { candidates, ms, ...rest } = enc.stats();
          assert.deepEqual(rest, { batches: 3, tokens: 300, recompactions: 3 }, what);
          assert.equal(candidates > 0, precision === "bf16x3", what);
          assert(ms.kernels > 0 && ms.upload > 0 && ms.download > 0 && ms.unpack > 0, what);
          assert.deepEqual((await enc.encode(x, 0)).length, 0);
          await assert.rejects(() => enc.encode(new Float32Array(20), 2), /2 × 32 = 64/);
          assert(enc.timeKernels(64, 3) > 0);
          assert(enc.timeKernels(64, 3, "gemm") > 0);
        } finally {
          await enc.close();
        }
        await assert.rejects(() => enc.encode(x, 1), /closed/);
        assert.throws(() => enc.timeKernels(64, 1), /closed/, "no launch on freed memory");
      }
    }
  },
});

Deno.test({
  name: "cuda: bf16x3 gives the f32 path's active latents and values on a wider SAE",
  ...onGpu,
  async fn() {
    const sae = randomSae({ architecture: "jumprelu", dIn: 512, dSae: 4096, seed: 13 });
    const x = gaussianInput(300, 512, 14, 2);
    const f32 = createCudaEncoder(sae, { maxRows: 128 });
    const split = createCudaEncoder(sae, { maxRows: 128, precision: "bf16x3" });
    try {
      const a = await f32.encode(x, 300);
      const b = await split.encode(x, 300);
      assertMatchesReference(sae, x, 300, b);
      let active = 0;
      for (let t = 0; t < 300; t++) {
        const h = referencePreActivations(sae, x.subarray(t * 512, (t + 1) * 512));
        const want = new Map<number, number>();
        a[t].indices.forEach((i, n) => want.set(i, a[t].values[n]));
        const got = new Map<number, number>();
        b[t].indices.forEach((i, n) => got.set(i, b[t].values[n]));
        for (const i of new Set([...want.keys(), ...got.keys()])) {
          if (want.has(i) !== got.has(i)) {
            // two f32 sums in different orders may only disagree within rounding of the threshold
            const edge = Math.abs(h[i] - Math.max(sae.threshold![i], 0));
            assert(edge <= 1e-5 * (1 + Math.abs(h[i])), `token ${t} latent ${i}: h ${h[i]}`);
            continue;
          }
          const d = Math.abs(got.get(i)! - want.get(i)!);
          assert(d <= 1e-5 * (1 + Math.abs(want.get(i)!)), `token ${t} latent ${i}: ${d} apart`);
        }
        active += a[t].indices.length;
      }
      const { candidates } = split.stats();
      assert(active > 300 && candidates >= active, `${candidates} candidates, ${active} active`);
      // auto: the split GEMM for 300 tokens, the f32 GEMM for 64
      const auto = createCudaEncoder(sae, { maxRows: 512, precision: "auto" });
      try {
        const c = await auto.encode(x, 300);
        for (let t = 0; t < 300; t++) assert.deepEqual([...c[t].indices], [...b[t].indices]);
        const after300 = auto.stats().candidates;
        assert(after300 >= active, `auto on 300 tokens ran the split GEMM (${after300})`);
        assertMatchesReference(sae, x, 64, await auto.encode(x, 64));
        assert.equal(auto.stats().candidates, after300, "auto on 64 tokens ran the f32 GEMM");
      } finally {
        await auto.close();
      }
    } finally {
      await f32.close();
      await split.close();
    }
  },
});

Deno.test({
  name: "cuda: bf16x3 in one pass per token (4096-token batches) gives the f32 path's latents",
  ...onGpu,
  async fn() {
    const sae = randomSae({ architecture: "jumprelu", dIn: 512, dSae: 4096, seed: 15 });
    assert.equal(segmentsFor(4096, 4096).segs, 1, "one pass per token at this size");
    const x = gaussianInput(4096, 512, 16, 2);
    const f32 = createCudaEncoder(sae, { maxRows: 4096 });
    const split = createCudaEncoder(sae, { maxRows: 4096, precision: "bf16x3" });
    try {
      const a = await f32.encode(x, 4096);
      const b = await split.encode(x, 4096);
      let active = 0;
      for (let t = 0; t < 4096; t++) {
        active += a[t].indices.length;
        const want = new Map<number, number>();
        a[t].indices.forEach((i, n) => want.set(i, a[t].values[n]));
        const got = new Map<number, number>();
        b[t].indices.forEach((i, n) => got.set(i, b[t].values[n]));
        let h: Float64Array | undefined; // the f64 reference, only where the two disagree
        for (const i of new Set([...want.keys(), ...got.keys()])) {
          if (want.has(i) !== got.has(i)) {
            h ??= referencePreActivations(sae, x.subarray(t * 512, (t + 1) * 512));
            const edge = Math.abs(h[i] - Math.max(sae.threshold![i], 0));
            assert(edge <= 1e-5 * (1 + Math.abs(h[i])), `token ${t} latent ${i}: h ${h[i]}`);
            continue;
          }
          const d = Math.abs(got.get(i)! - want.get(i)!);
          assert(d <= 1e-5 * (1 + Math.abs(want.get(i)!)), `token ${t} latent ${i}: ${d} apart`);
        }
      }
      assert(active > 4096, `latents are active (${active})`);
      assertMatchesReference(sae, x, 8, b.slice(0, 8)); // and the first tokens against the f64 reference
    } finally {
      await f32.close();
      await split.close();
    }
  },
});
