/** The native watched product against an f64 reference, at every tile height and panel width. */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { nativeKernelsStatus } from "./native_library.ts";
import { openNativeSgemm } from "./native_sgemm.ts";

// where the native kernels cannot load (no AVX-512 VNNI, no compiler, no -A): nothing to test
const ignore = !(await nativeKernelsStatus()).available;

Deno.test({
  name:
    "native sgemm: x·W and (x − b)·W within f32 rounding of the f64 product for m 0–13, n 1–130, k 1–768",
  ignore,
  async fn() {
    const rng = new Rng(17);
    let checked = 0;
    for (const k of [1, 17, 768]) {
      for (const n of [1, 63, 64, 65, 130]) {
        const w = rng.fillGaussian(new Float32Array(k * n));
        const gemm = (await openNativeSgemm(w, k, n))!;
        for (let m = 0; m <= 13; m++) {
          const x = rng.fillGaussian(new Float32Array(m * k));
          // every other shape with a vector subtracted from each row (b_dec), in f32
          const sub = m % 2 ? rng.fillGaussian(new Float32Array(k)) : undefined;
          const xs = (t: number, i: number) =>
            sub ? Math.fround(x[t * k + i] - sub[i]) : x[t * k + i];
          // one spare row past the product: the kernel must not write it
          const out = new Float32Array((m + 1) * n).fill(-7);
          gemm.run(x, m, out, sub);
          for (let t = 0; t < m; t++) {
            for (let j = 0; j < n; j++) {
              let sum = 0, mag = 0;
              for (let i = 0; i < k; i++) {
                sum += xs(t, i) * w[i * n + j];
                mag += Math.abs(xs(t, i) * w[i * n + j]);
              }
              // a chain of k f32 fused multiply-adds: at most k·2⁻²⁴·Σ|x·w| from the exact sum
              const got = out[t * n + j];
              assert.ok(
                Math.abs(got - sum) <= k * 2 ** -24 * mag + 1e-30,
                `k ${k} n ${n} m ${m} [${t}, ${j}]: ${got} vs ${sum}`,
              );
              checked++;
            }
          }
          assert.ok(out.subarray(m * n).every((v) => v === -7), `k ${k} n ${n} m ${m}: wrote past`);
        }
      }
    }
    assert.ok(checked > 20_000, `only ${checked} products checked`);
  },
});

Deno.test({
  name: "native sgemm: W or buffers of the wrong size are refused, saying what was expected",
  ignore,
  async fn() {
    await assert.rejects(
      () => openNativeSgemm(new Float32Array(5), 3, 2),
      /expected W of 3×2 = 6 values, found 5/,
    );
    const gemm = (await openNativeSgemm(new Float32Array(6), 3, 2))!;
    assert.throws(
      () => gemm.run(new Float32Array(3), 2, new Float32Array(4)),
      /expected x of 2×3, out of 2×2 values at least and sub of 3, found 3, 4 and none/,
    );
    assert.throws(
      () => gemm.run(new Float32Array(6), 2, new Float32Array(4), new Float32Array(2)),
      /and sub of 3, found 6, 4 and 2/,
    );
  },
});
