/**
 * The candidate encoder (int8 pass, exact f32 recomputation) against the
 * plain-TypeScript f64 reference, under the tolerance rule of
 * `ort_encoder_test.ts` (`testdata/compare_encoding.ts`), and against the f32
 * onnxruntime encoder: the same active latents.
 */
import assert from "node:assert/strict";
import { bf16ToF32, f32ToBf16 } from "../core/dtype.ts";
import { Rng } from "../core/random.ts";
import { referenceEncode, referencePreActivations } from "../core/reference_encoder.ts";
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import { randomVariant, variantName, VARIANTS } from "../core/testdata/random_variants.ts";
import { randomSae } from "../formats/random_sae.ts";
import { createCandidateEncoder } from "./candidate_encoder.ts";
import { nativeKernelsStatus } from "./native_kernels.ts";
import { createOrtEncoder } from "./ort_encoder.ts";
import { compareToken } from "./testdata/compare_encoding.ts";

const BATCHES = [1, 3, 64];

/** {@linkcode compareToken} for every token of a batch (`where` names it, the token is appended). */
function compareBatch(
  sae: SaeWeights,
  x: Float32Array,
  got: SparseLatents[],
  want: SparseLatents[],
  where: string,
): void {
  for (let t = 0; t < got.length; t++) {
    compareToken(sae, x.subarray(t * sae.dIn, (t + 1) * sae.dIn), got[t], want[t], `${where} ${t}`);
  }
  assert.equal(got.length, want.length, `${where}: tokens`);
}

Deno.test("candidate encoder matches the reference for every architecture, normalisation and kind", async () => {
  const dIn = 40, dSae = 300; // not multiples of 8 or 16: scan and padding tails run
  let tokens = 0, excused = 0;
  for (const [n, v] of VARIANTS.entries()) {
    const sae = randomVariant(v, dIn, dSae, 40 + n);
    const enc = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1 });
    const f32 = await createOrtEncoder(sae, { intraOpThreads: 1 });
    const rng = new Rng(500 + n);
    try {
      for (const batch of BATCHES) {
        const x = rng.fillGaussian(new Float32Array(batch * dIn), 1.5);
        const got = await enc.encode(x, batch);
        const want = referenceEncode(sae, x, batch);
        const ort = await f32.encode(x, batch);
        for (let t = 0; t < batch; t++) {
          const row = x.subarray(t * dIn, (t + 1) * dIn);
          const where = `${variantName(v)} batch ${batch} token ${t}`;
          excused += compareToken(sae, row, got[t], want[t], where);
          compareToken(sae, row, got[t], ort[t], `${where} (against f32 onnxruntime)`);
          tokens++;
        }
      }
      assert.equal(enc.path, "int8-candidates");
      const stats = enc.stats();
      assert.equal(stats.tokens, BATCHES.reduce((a, b) => a + b, 0));
    } finally {
      await enc.close();
      await f32.close();
    }
  }
  assert.ok(tokens > 1000, `checked ${tokens} tokens`);
  assert.ok(excused <= tokens / 100, `${excused} excused flips in ${tokens} tokens`);
});

Deno.test("candidate encoder: bf16 weights are recomputed from bf16 rows, with the same latents", async () => {
  const dIn = 40, dSae = 300;
  for (const [n, v] of VARIANTS.entries()) {
    const sae = randomVariant(v, dIn, dSae, 70 + n);
    // every encoder weight rounded to bf16 (nearest, ties to even), as a bf16 checkpoint loads
    bf16ToF32(f32ToBf16(sae.wEnc), sae.wEnc);
    const enc = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1 });
    const f32 = await createOrtEncoder(sae, { intraOpThreads: 1 });
    try {
      assert.equal(enc.recomputeRows, "bf16", variantName(v));
      const x = new Rng(600 + n).fillGaussian(new Float32Array(64 * dIn), 1.5);
      const got = await enc.encode(x, 64);
      compareBatch(sae, x, got, referenceEncode(sae, x, 64), `${variantName(v)} bf16`);
      compareBatch(sae, x, got, await f32.encode(x, 64), `${variantName(v)} bf16 (against f32)`);
      assert.ok(got.some((t) => t.indices.length > 0), `${variantName(v)}: latents are active`);
    } finally {
      await enc.close();
      await f32.close();
    }
  }
  // one weight off the bf16 grid keeps the f32 rows
  const sae = randomVariant(VARIANTS[0], dIn, dSae, 99);
  const enc = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1 });
  assert.equal(enc.recomputeRows, "f32");
  await enc.close();
});

/** A bench-like JumpReLU SAE: unit-ish columns, thresholds set per test. */
function jumprelu(dIn: number, dSae: number, seed: number): SaeWeights {
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed });
  return sae;
}

Deno.test("candidate encoder: latents a hair above or below their threshold are decided exactly", async () => {
  const dIn = 64, dSae = 512, batch = 8;
  const sae = jumprelu(dIn, dSae, 3);
  const x = new Rng(4).fillGaussian(new Float32Array(batch * dIn), 2);
  // thresholds at token 0's own pre-activations, 1e-3 below for even latents (active
  // by a hair) and 1e-3 above for odd ones (inactive by a hair): the int8 pass's
  // error is far larger than 1e-3, so only the exact recomputation can decide
  const h0 = referencePreActivations(sae, x.subarray(0, dIn));
  sae.threshold = Float32Array.from(h0, (h, j) => Math.abs(h) + (j % 2 === 0 ? -1e-3 : 1e-3));
  const enc = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1 });
  try {
    const got = await enc.encode(x, batch);
    const active = [...got[0].indices];
    const expected = [...h0.keys()].filter((j) =>
      j % 2 === 0 && h0[j] > 0 && h0[j] > Math.abs(h0[j]) - 1e-3
    );
    assert.deepEqual(active, expected);
    const want = referenceEncode(sae, x, batch);
    compareBatch(sae, x, got, want, `token`);
  } finally {
    await enc.close();
  }
});

Deno.test("candidate encoder: tokens over the candidate cap are encoded in f32, counted; mostly-fallback SAEs switch to f32", async () => {
  const dIn = 32, dSae = 200, batch = 5;
  for (const architecture of ["jumprelu", "topk"] as const) {
    const sae = randomSae({ architecture, dIn, dSae, seed: 8, k: 12 });
    const enc = await createCandidateEncoder(sae, {
      tune: false,
      intraOpThreads: 1,
      maxCandidates: 0,
    });
    try {
      const x = new Rng(9).fillGaussian(new Float32Array(batch * dIn));
      const got = await enc.encode(x, batch);
      const want = referenceEncode(sae, x, batch);
      compareBatch(sae, x, got, want, `${architecture}`);
      if (architecture === "jumprelu") {
        assert.equal(enc.fallbackTokens, batch);
        assert.equal(enc.stats().candidates, 0); // none recomputed: the f32 encoder did them
      } else {
        // TopK judges its second round: tokens with at most k candidates need none
        assert.ok(enc.fallbackTokens > 0);
      }
      assert.equal(enc.path, "int8-candidates");
      // every token falls back: after 512 tokens the int8 pass is given up
      const many = 520;
      const y = new Rng(10).fillGaussian(new Float32Array(many * dIn));
      await enc.encode(y, many);
      assert.equal(enc.path, "f32");
      const before = enc.fallbackTokens;
      const after = await enc.encode(x, batch);
      compareBatch(sae, x, after, want, `${architecture} f32`);
      assert.equal(enc.fallbackTokens, before + batch); // f32 from now on: every token counted
    } finally {
      await enc.close();
    }
  }
});

Deno.test("candidate encoder: zero rows, a zero encoder column, watched latents, empty batch", async () => {
  const dIn = 24, dSae = 96;
  const sae = randomSae({ architecture: "topk", dIn, dSae, seed: 12, k: 6 });
  for (let i = 0; i < dIn; i++) sae.wEnc[i * dSae + 5] = 0; // latent 5 reads nothing
  const watch = Uint32Array.of(90, 5, 3, 3);
  const enc = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1 });
  const watched = await createCandidateEncoder(sae, { tune: false, intraOpThreads: 1, watch });
  try {
    const x = new Rng(13).fillGaussian(new Float32Array(3 * dIn));
    x.fill(0, dIn, 2 * dIn); // token 1 is all zeros
    const got = await enc.encode(x, 3);
    const want = referenceEncode(sae, x, 3);
    compareBatch(sae, x, got, want, `token`);
    // watched TopK: still the top k of all latents, reported only where watched
    const w = await watched.encode(x, 3);
    for (let t = 0; t < 3; t++) {
      const keep = [...got[t].indices].filter((i) => i === 90 || i === 5 || i === 3);
      assert.deepEqual([...w[t].indices], keep);
    }
    assert.deepEqual(await enc.encode(new Float32Array(0), 0), []);
  } finally {
    await enc.close();
    await watched.close();
  }
});

Deno.test("createOrtEncoder picks the path: int8-candidates when asked or (auto) for large SAEs, f32 otherwise", async () => {
  const path = async (sae: SaeWeights, opts: Parameters<typeof createOrtEncoder>[1]) => {
    const enc = await createOrtEncoder(sae, opts);
    await enc.close();
    return (enc as { path?: string }).path;
  };
  const small = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
  assert.equal(await path(small, {}), "f32"); // the library default
  assert.equal(await path(small, { fullEncode: "int8-candidates" }), "int8-candidates");
  assert.equal(await path(small, { fullEncode: "auto" }), "f32"); // under 2²⁰ weights
  // a watched JumpReLU graph computes only its latents: cheaper than any full encode
  const watch = Uint32Array.of(1, 2);
  assert.equal(await path(small, { fullEncode: "int8-candidates", watch }), "f32");
  const large = randomSae({ architecture: "topk", dIn: 64, dSae: 16384, seed: 2, k: 8 });
  assert.equal(await path(large, { fullEncode: "auto" }), "int8-candidates");
  assert.equal(
    await path(large, { fullEncode: "auto", provider: "cpu", watch }),
    "int8-candidates",
  );
});

Deno.test("candidate encoder with tuning: both paths run on a batch size, every batch exact", async () => {
  const dIn = 32, dSae = 256, batch = 16;
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed: 21 });
  const enc = await createCandidateEncoder(sae, { intraOpThreads: 1 });
  try {
    const x = new Rng(22).fillGaussian(new Float32Array(batch * dIn));
    const want = referenceEncode(sae, x, batch);
    const paths = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const got = await enc.encode(x, batch);
      paths.add(enc.path);
      compareBatch(sae, x, got, want, `batch ${i} token`);
    }
    // three timed batches of each path after a warm-up each: both ran
    assert.deepEqual([...paths].sort(), ["f32", "int8-candidates"]);
  } finally {
    await enc.close();
  }
});

Deno.test("candidate encoder: the SIMD scan admits the same candidates as the TypeScript loop, batches in flight together", async () => {
  const sae = randomSae({ architecture: "jumprelu", dIn: 48, dSae: 1022, seed: 31 });
  const x = new Rng(32).fillGaussian(new Float32Array(200 * 48), 1.5);
  // onnxruntime's product and the WebAssembly scan (the native kernels scan in C)
  const simd = await createCandidateEncoder(sae, {
    tune: false,
    intraOpThreads: 1,
    nativeKernels: "off",
  });
  const plain = await createCandidateEncoder(sae, {
    tune: false,
    intraOpThreads: 1,
    simdScan: false,
    nativeKernels: "off",
  });
  try {
    const batches = [0, 50, 120, 137].map((t0, i, a) => [t0, (a[i + 1] ?? 200) - t0]);
    const run = (enc: typeof simd) =>
      Promise.all(batches.map(([t0, n]) => enc.encode(x.subarray(t0 * 48), n)));
    for (const [t0, n] of batches) await simd.encode(x.subarray(t0 * 48), n);
    assert.equal(
      simd.stats().simdScanBatches,
      4,
      "one batch at a time: each through the SIMD scan",
    );
    const [got, want] = [(await run(simd)).flat(), (await run(plain)).flat()];
    assert.equal(simd.stats().candidates, 2 * plain.stats().candidates);
    assert.ok(
      simd.stats().simdScanBatches >= 6,
      "two batches in flight: both through the SIMD scan",
    );
    assert.equal(plain.stats().simdScanBatches, 0);
    assert.ok(simd.stats().candidates > 200, "some candidates per token");
    for (let t = 0; t < 200; t++) {
      assert.deepEqual([...got[t].indices], [...want[t].indices], `token ${t}`);
      assert.deepEqual([...got[t].values], [...want[t].values], `token ${t}`);
    }
  } finally {
    await simd.close();
    await plain.close();
  }
});

/** Whether this CPU runs the native kernels (AVX-512 VNNI); elsewhere `auto` keeps onnxruntime's. */
const nativeHere = (await nativeKernelsStatus()).available;

Deno.test({
  name:
    "candidate encoder: the native int8 product and dots give onnxruntime's candidates and the same latents",
  ignore: !nativeHere,
  async fn() {
    const dIn = 40, dSae = 300;
    for (const [n, v] of VARIANTS.entries()) {
      const sae = randomVariant(v, dIn, dSae, 90 + n);
      const native = await createCandidateEncoder(sae, {
        tune: false,
        intraOpThreads: 1,
        nativeKernels: "require",
      });
      const ort = await createCandidateEncoder(sae, {
        tune: false,
        intraOpThreads: 1,
        nativeKernels: "off",
      });
      try {
        assert.equal(native.int8Kernel, "native-vnni", variantName(v));
        assert.equal(native.dotsKernel, "native", variantName(v));
        assert.equal(ort.int8Kernel, "onnxruntime");
        assert.equal(ort.dotsKernel, "wasm");
        assert.equal(native.int8KernelNote, undefined);
        assert.equal(ort.int8KernelNote, "execution.native_kernels is off");
        const x = new Rng(700 + n).fillGaussian(new Float32Array(70 * dIn), 1.5);
        const got = await native.encode(x, 70);
        const want = await ort.encode(x, 70);
        // fewer slots than candidates: TopK's tokens (over 20 in its first round) are scanned
        // again alone, with the same candidates; the others' (over 3) fall back to f32; the
        // same latents either way
        const topk = sae.architecture === "topk";
        const narrow = await createCandidateEncoder(sae, {
          tune: false,
          intraOpThreads: 1,
          nativeKernels: "require",
          maxCandidates: topk ? 1024 : 3,
          nativeSlots: 20,
        });
        try {
          compareBatch(sae, x, await narrow.encode(x, 70), want, `${variantName(v)} few slots`);
          if (topk) {
            assert.equal(narrow.stats().fallbackTokens, 0, variantName(v));
            assert.equal(narrow.stats().candidates, native.stats().candidates, variantName(v));
          } else assert.ok(narrow.stats().fallbackTokens > 0, variantName(v));
        } finally {
          await narrow.close();
        }
        // the same integers, so the same candidates (TopK: its input is quantized per token
        // for the native product, per batch for onnxruntime's); the dots differ by f32 rounding
        if (sae.architecture !== "topk") {
          assert.equal(native.stats().candidates, ort.stats().candidates, variantName(v));
        }
        compareBatch(sae, x, got, want, `${variantName(v)} native against onnxruntime`);
        compareBatch(sae, x, got, referenceEncode(sae, x, 70), `${variantName(v)} native`);
      } finally {
        await native.close();
        await ort.close();
      }
    }
  },
});

Deno.test({
  name:
    "candidate encoder, native kernels: batches in flight together, every product, scan and score split between threads",
  ignore: !nativeHere,
  async fn() {
    // 64 × 257 × 4103: past every size at which the native kernels split their work
    const dIn = 257, dSae = 4103, batch = 64;
    for (const architecture of ["jumprelu", "topk"] as const) {
      const sae = randomSae({
        architecture,
        dIn,
        dSae,
        seed: 51,
        ...(architecture === "topk" ? { k: 40 } : {}),
      });
      const native = await createCandidateEncoder(sae, { tune: false, nativeKernels: "require" });
      const ort = await createCandidateEncoder(sae, { tune: false, nativeKernels: "off" });
      try {
        // std 0.5: a few hundred of the JumpReLU's latents a token (1.5 would fire a quarter)
        const x = new Rng(52).fillGaussian(new Float32Array(3 * batch * dIn), 0.5);
        const part = (i: number) => x.subarray(i * batch * dIn, (i + 1) * batch * dIn);
        const together = await Promise.all([0, 1, 2].map((i) => native.encode(part(i), batch)));
        for (let i = 0; i < 3; i++) {
          const want = await ort.encode(part(i), batch);
          compareBatch(sae, part(i), together[i], want, `${architecture} batch ${i} in flight`);
        }
        if (architecture !== "topk") {
          assert.equal(native.stats().candidates, ort.stats().candidates);
        }
        assert.ok(native.stats().candidates > 3 * batch, "some candidates");
        assert.equal(native.stats().fallbackTokens, 0);
      } finally {
        await native.close();
        await ort.close();
      }
    }
  },
});
