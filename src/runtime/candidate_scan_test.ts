import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import type { SaeWeights } from "../core/sae.ts";
import { CandidateScan, type CandidateScanOptions, type ScanInput } from "./candidate_scan.ts";
import { nativeKernelsStatus, openNativeSelect } from "./native_kernels.ts";

const nativeHere = (await nativeKernelsStatus()).available;

/** A batch whose sums put a few hundred of `dSae` columns near each token's cut. */
function batch(rng: Rng, tokens: number, dSae: number, topk: boolean) {
  const columnScale = Float64Array.from({ length: dSae }, () => 0.5 + rng.uniform());
  const columnBias = Float32Array.from({ length: dSae }, () => rng.gaussian() * 0.1);
  const bounds = {
    hat: Float64Array.from({ length: dSae }, () => 0.01 * rng.uniform()),
    err: Float64Array.from({ length: dSae }, () => 0.01 * rng.uniform()),
    x: Float64Array.from({ length: dSae }, () => 1e-6 * rng.uniform()),
  };
  const scale = Float32Array.from({ length: tokens }, () => 0.01 + 0.02 * rng.uniform());
  const tokenBounds = new Float32Array(tokens * 5);
  for (let t = 0; t < tokens; t++) {
    // the uniform bound is at least every column's own
    tokenBounds.set(
      [1 + rng.uniform(), 1 + rng.uniform(), 3, 0.05, -0.05 + 0.1 * rng.uniform()],
      5 * t,
    );
  }
  const acc = Int32Array.from({ length: tokens * dSae }, () => Math.round(rng.gaussian() * 40));
  const approx = Float32Array.from(acc, (a, i) => a * 0.01 + columnBias[i % dSae]);
  const input: ScanInput = topk
    ? { approx, scale, tokenBounds, tokens }
    : { acc, scale, tokenBounds, tokens };
  const opts: CandidateScanOptions = { maxCandidates: dSae, bounds, columnScale, columnBias };
  return { input, opts };
}

/** Run a scan; each token's candidates and upper bounds, and the fallbacks. */
async function scanned(scan: CandidateScan, input: ScanInput) {
  const ends = new Uint32Array(input.tokens), fallback = new Uint8Array(input.tokens);
  await scan.scan(input, ends, fallback);
  return {
    cand: [...scan.cand.subarray(0, ends[input.tokens - 1])],
    upper: [...scan.upper.subarray(0, ends[input.tokens - 1])],
    ends: [...ends],
    fallback: [...fallback],
  };
}

Deno.test({
  name: "candidate scan: native and TypeScript keep the same candidates and bounds, bit for bit",
  ignore: !nativeHere,
  async fn() {
    const native = await openNativeSelect();
    const rng = new Rng(41);
    for (const topk of [false, true]) {
      // 70 × 4103 latents: past the size the native scan splits between threads
      for (const dSae of [7, 300, 1029, 4103]) {
        const tokens = dSae === 4103 ? 70 : 37;
        const { input, opts } = batch(rng, tokens, dSae, topk);
        const sae = { dSae, architecture: topk ? "topk" : "jumprelu" } as SaeWeights;
        const here = await scanned(new CandidateScan(sae, opts), input);
        const there = await scanned(new CandidateScan(sae, { ...opts, native }), input);
        // few slots: TopK's tokens are scanned again alone, the others' fall back
        const narrow = await scanned(
          new CandidateScan(sae, { ...opts, maxCandidates: 5, nativeSlots: 5, native }),
          input,
        );
        const narrowHere = await scanned(
          new CandidateScan(sae, { ...opts, maxCandidates: 5 }),
          input,
        );
        const where = `${topk ? "topk" : "acc"} ${dSae}`;
        assert.ok(here.cand.length > tokens, `${where}: some candidates (${here.cand.length})`);
        assert.ok(here.cand.length < tokens * dSae, `${where}: not every latent`);
        assert.deepEqual(there, here, where);
        assert.deepEqual(narrow, narrowHere, `${where}, 5 slots`);
        if (topk) assert.deepEqual(narrow, here, `${where}: TopK keeps them all`);
        else assert.ok(narrow.fallback.some((f) => f === 1), `${where}: some fall back`);
      }
    }
  },
});

Deno.test({
  name: "candidate scan: a latent exactly at its bound is kept (the rounding slack), natively too",
  ignore: !nativeHere,
  async fn() {
    const native = await openNativeSelect();
    const dSae = 20;
    const zeros = new Float64Array(dSae);
    const opts: CandidateScanOptions = {
      maxCandidates: 1024,
      bounds: { hat: zeros, err: zeros, x: zeros },
      columnScale: new Float64Array(dSae).fill(1),
      columnBias: new Float32Array(dSae),
    };
    // cut 0.5, bound 0.25: v = 0.75 passes only by the slack; 0.75 − 2⁻¹⁰ does not
    const approx = new Float32Array(dSae).fill(0.6);
    approx[3] = 0.75;
    approx[11] = 0.75 - 2 ** -10;
    approx[17] = 0.9;
    const input: ScanInput = {
      approx,
      scale: new Float32Array([1]),
      tokenBounds: new Float32Array([1, 1, 1, 0.25, 0.5]),
      tokens: 1,
    };
    const sae = { dSae, architecture: "topk" } as SaeWeights;
    for (
      const scan of [new CandidateScan(sae, opts), new CandidateScan(sae, { ...opts, native })]
    ) {
      assert.deepEqual((await scanned(scan, input)).cand, [3, 17]);
    }
  },
});
