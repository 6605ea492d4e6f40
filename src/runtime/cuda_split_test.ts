import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import {
  bf16Bits,
  columnNorms,
  fromBf16,
  splitBound,
  stackedBf16,
  transpose,
} from "./cuda_split.ts";

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
  const dIn = 7, dSae = 5;
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
