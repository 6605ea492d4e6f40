import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { bf16ToF32, f32ToBf16 } from "../core/dtype.ts";
import { columnNorms, splitBound, stackedBf16 } from "./cuda_split.ts";
import { transpose } from "./matrix.ts";

/** One value's bf16 bits, as the split rounds (`core/dtype.ts`). */
const bf16Bits = (v: number) => f32ToBf16(Float32Array.of(v))[0];
/** The f32 value of bf16 bits. */
const fromBf16 = (bits: number) => bf16ToF32(Uint16Array.of(bits))[0];

/** The nearest bf16 found by looking at both neighbours (ties to the even one): independent of the bit trick. */
function nearestBf16(v: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, v);
  const down = buf.getUint32(0) >>> 16; // truncation: toward zero
  const up = down + 1;
  const toF = (b: number) => (buf.setUint32(0, b << 16), buf.getFloat32(0));
  const dDown = Math.abs(v - toF(down));
  const dUp = Math.abs(toF(up) - v);
  if (dDown !== dUp) return dDown < dUp ? down : up;
  return down % 2 === 0 ? down : up;
}

Deno.test("bf16: round to nearest, ties to even, as an independent search finds", () => {
  const rng = new Rng(5);
  const values = [1, -1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -(1 + 2 ** -9), 3.14159, 1e-30];
  for (let i = 0; i < 2000; i++) {
    values.push(rng.gaussian() * 10 ** Math.floor(rng.uniform() * 13 - 6));
  }
  for (const v of values) {
    const f = Math.fround(v);
    assert.equal(bf16Bits(f), nearestBf16(f), `bf16(${f})`);
  }
  assert.equal(fromBf16(0x3f80), 1);
  assert.equal(bf16Bits(1 + 2 ** -8), 0x3f80, "a tie goes to the even neighbour (down)");
  assert.equal(bf16Bits(1 + 3 * 2 ** -8), 0x3f82, "a tie goes to the even neighbour (up)");
});

Deno.test("bf16 split: hi + lo is within 2^-16 of every weight, stacked [hi; lo; hi]", () => {
  const dIn = 700, dSae = 150; // more weights than one step of the split (2^16)
  const w = new Rng(6).fillGaussian(new Float32Array(dIn * dSae));
  const s = stackedBf16(w, dIn, dSae);
  assert.equal(s.length, 3 * dIn * dSae);
  const n = dIn * dSae;
  for (let i = 0; i < n; i++) {
    assert.equal(s[i], s[2 * n + i], "first and third blocks are both hi");
    const err = Math.abs(w[i] - fromBf16(s[i]) - fromBf16(s[n + i]));
    assert(err <= 2 ** -16 * Math.abs(w[i]), `weight ${i}: ${w[i]} split with error ${err}`);
  }
});

Deno.test("transpose and column norms against plain loops", () => {
  const rows = 70, cols = 130;
  const a = new Rng(7).fillGaussian(new Float32Array(rows * cols));
  const t = transpose(a, rows, cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) assert.equal(t[c * rows + r], a[r * cols + c]);
  }
  const norms = columnNorms(a, rows, cols);
  for (let c = 0; c < cols; c++) {
    let ss = 0;
    for (let r = 0; r < rows; r++) ss += a[r * cols + c] ** 2;
    assert(norms[c] >= Math.sqrt(ss), `column ${c} norm rounded up`);
    assert(norms[c] <= Math.sqrt(ss) * (1 + 2 ** -22), `column ${c} norm within two ulps`);
  }
});

Deno.test("split bound grows with depth and sits between the f32 and bf16 rounding", () => {
  assert(splitBound(2304) < 2 ** -8 && splitBound(2304) > 2 ** -11);
  assert(splitBound(4096) > splitBound(768));
});

/** f32 rounding toward zero (a truncating accumulator), by stepping back one ulp where rounding went out. */
function truncF32(v: number): number {
  const f = Math.fround(v);
  if (Math.abs(f) <= Math.abs(v)) return f;
  const b = new Float32Array([f]);
  new Int32Array(b.buffer)[0] -= 1; // one ulp toward zero (same sign, smaller magnitude)
  return b[0];
}

Deno.test("split bound: the split GEMM and an f32 dot product stay within it, even accumulating by truncation", () => {
  const rng = new Rng(11);
  let worst = 0;
  for (const dIn of [16, 300, 2304]) {
    for (let trial = 0; trial < 40; trial++) {
      const scale = 10 ** Math.floor(rng.uniform() * 8 - 4);
      const x = rng.fillGaussian(new Float32Array(dIn), scale);
      const w = rng.fillGaussian(new Float32Array(dIn), 1 / Math.sqrt(dIn));
      if (trial % 4 === 0) { for (let i = 0; i < dIn; i += 3) x[i] = 0; // sparse rows too
       }
      const stacked = (v: Float32Array) => stackedBf16(v, dIn, 1); // [hi; lo; hi]
      const xs = stacked(x), ws = stacked(w);
      // the GEMM's operands: [x_hi, x_hi, x_lo] · [w_hi; w_lo; w_hi]
      const a = (k: number) => fromBf16(k < 2 * dIn ? xs[k % dIn] : xs[dIn + (k % dIn)]);
      const b = (k: number) => fromBf16(ws[k]);
      const order = Array.from({ length: 3 * dIn }, (_, k) => k);
      for (let i = order.length - 1; i > 0; i--) { // an accumulation order the hardware might use
        const j = Math.floor(rng.uniform() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
      let nearest = 0, truncated = 0;
      for (const k of order) {
        const p = a(k) * b(k); // bf16 × bf16 is exact in f32
        nearest = Math.fround(nearest + p);
        truncated = truncF32(truncated + p);
      }
      let s = 0; // the recomputation: an f32 dot product with fused multiply-adds
      for (let i = 0; i < dIn; i++) s = Math.fround(x[i] * w[i] + s);
      let nx = 0, nw = 0;
      for (let i = 0; i < dIn; i++) (nx += x[i] * x[i]), (nw += w[i] * w[i]);
      const scaleOf = Math.sqrt(nx) * Math.sqrt(nw);
      if (scaleOf === 0) continue;
      const c = splitBound(dIn);
      const what = `dIn ${dIn} trial ${trial}`;
      assert(
        Math.abs(nearest - s) <= (c / 4) * scaleOf,
        `${what}: round-to-nearest within the derived bound`,
      );
      assert(Math.abs(truncated - s) <= (c / 2) * scaleOf, `${what}: truncation within twice it`);
      worst = Math.max(worst, Math.abs(truncated - s) / (c * scaleOf));
    }
  }
  assert(worst > 0 && worst < 0.5, `the bound is used, not vacuous, with margin: ${worst}`);
});
