/** The native watched product against an f64 reference, at every tile height and panel width. */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { nativeKernelsStatus } from "./native_library.ts";
import { openNativeSgemm } from "./native_sgemm.ts";
import { hugePageAdvice, hugePageBytes, transparentHugePageMode } from "./huge_pages.ts";

// where the native kernels cannot load (no AVX-512 VNNI, no compiler, no -A): nothing to test
const ignore = !(await nativeKernelsStatus()).available;

Deno.test({
  name:
    "native sgemm: x·W and (x − b)·W within f32 rounding of the f64 product for m 0–13, n 1–130 (every panel width), k 1–768",
  ignore,
  async fn() {
    const rng = new Rng(17);
    let checked = 0;
    for (const k of [1, 17, 768]) {
      // panels of 16, 32, 48 and 64 columns (1 to 4 registers), full and partial
      for (const n of [1, 16, 17, 40, 63, 64, 65, 130]) {
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
          gemm.run(x, m, out, { sub });
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

Deno.test("native sgemm: a W of the wrong size is refused on every machine", async () => {
  await assert.rejects(
    () => openNativeSgemm(new Float32Array(5), 3, 2),
    /expected W of 3×2 = 6 values, found 5/,
  );
});

Deno.test({
  name: "native sgemm: buffers of the wrong size are refused, saying what was expected",
  ignore,
  async fn() {
    const gemm = (await openNativeSgemm(new Float32Array(6), 3, 2))!;
    assert.throws(
      () => gemm.run(new Float32Array(3), 2, new Float32Array(4)),
      /expected x of 2×3, out of 2×2 values at least, sub of 3 and bias and level of 2, found 3, 4, none, none and none/,
    );
    assert.throws(
      () => gemm.run(new Float32Array(6), 2, new Float32Array(4), { sub: new Float32Array(2) }),
      /found 6, 4, 2, none and none/,
    );
    const bias = new Float32Array(3);
    assert.throws(
      () =>
        gemm.run(new Float32Array(6), 2, new Float32Array(4), {
          activation: { kind: "jumprelu", bias, level: new Float32Array(2) },
        }),
      /found 6, 4, none, 3 and 2/,
    );
  },
});

Deno.test({
  name:
    "native sgemm: the fused bias and ReLU / JumpReLU are the JavaScript f32 steps on the kernel's own dots, bit for bit",
  ignore,
  async fn() {
    const rng = new Rng(23);
    const f32 = Math.fround;
    let active = 0, zero = 0;
    for (const [k, n] of [[48, 17], [768, 64], [100, 130]]) {
      const w = rng.fillGaussian(new Float32Array(k * n));
      const gemm = (await openNativeSgemm(w, k, n))!;
      const m = 11;
      const x = rng.fillGaussian(new Float32Array(m * k));
      x[3 * k + 1] = NaN; // token 3's dots are NaN: both activations make them 0, as `h > t`
      const sub = rng.fillGaussian(new Float32Array(k));
      const bias = rng.fillGaussian(new Float32Array(n), 3);
      // thresholds around the dots' scale, some at exactly 0
      const level = Float32Array.from({ length: n }, (_, j) => j % 5 === 0 ? 0 : Math.abs(bias[j]));
      const dots = new Float32Array(m * n);
      gemm.run(x, m, dots, { sub });
      const relu = new Float32Array(m * n), jump = new Float32Array(m * n);
      gemm.run(x, m, relu, { sub, activation: { kind: "relu", bias } });
      gemm.run(x, m, jump, { sub, activation: { kind: "jumprelu", bias, level } });
      for (let c = 0; c < m * n; c++) {
        const h = f32(dots[c] + bias[c % n]);
        const wantRelu = h > 0 ? h : 0, wantJump = h > level[c % n] ? h : 0;
        assert.ok(
          Object.is(relu[c], wantRelu),
          `k ${k} n ${n} [${c}]: relu ${relu[c]} vs ${wantRelu}`,
        );
        assert.ok(
          Object.is(jump[c], wantJump),
          `k ${k} n ${n} [${c}]: jumprelu ${jump[c]} vs ${wantJump}`,
        );
        if (wantJump > 0) active++;
        else zero++;
      }
    }
    assert.ok(
      active > 100 && zero > 100,
      `active ${active}, zero ${zero}: both sides of the thresholds`,
    );
  },
});

Deno.test({
  name: "native sgemm: its packed panels ask for huge pages",
  ignore: ignore || [null, "never"].includes(transparentHugePageMode()) ||
    hugePageBytes() > 2 ** 21,
  async fn() {
    const [k, n] = [768, 2048]; // 6 MiB of panels: two whole huge pages at least
    const w = new Rng(5).fillGaussian(new Float32Array(k * n));
    const before = hugePageAdvice();
    const gemm = (await openNativeSgemm(w, k, n))!;
    const after = hugePageAdvice();
    assert.equal(after.arrays, before.arrays + 1);
    assert.ok(after.bytes - before.bytes >= 2 * hugePageBytes(), `${after.bytes - before.bytes}`);
    const out = new Float32Array(n);
    gemm.run(new Float32Array(k).fill(1), 1, out);
    // column j of x·W with x all ones: the column's sum, to f32 rounding
    let sum = 0, mag = 0;
    for (let i = 0; i < k; i++) (sum += w[i * n + 7]), (mag += Math.abs(w[i * n + 7]));
    assert.ok(Math.abs(out[7] - sum) <= k * 2 ** -24 * mag, `${out[7]} vs ${sum}`);
  },
});
