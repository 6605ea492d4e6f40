import assert from "node:assert/strict";
import { quantizeColumns } from "./quantized_columns.ts";

Deno.test("quantizeColumns: per-column scale, rounding, error and norms by hand", () => {
  // W = [[1, 0.5, 0], [-0.5, 0.25, 0]]: columns (1, −0.5), (0.5, 0.25), (0, 0)
  const w = new Float32Array([1, 0.5, 0, -0.5, 0.25, 0]);
  const c = quantizeColumns(w, 2, 3);
  assert.deepEqual([...c.scale], [Math.fround(1 / 127), Math.fround(0.5 / 127), 1]);
  // the scale is rounded to f32 (1/127 a little low), so −0.5/scale is −63.5000002: −64;
  // 0.25/(0.5/127) = 63.5 exactly (a power-of-two ratio) rounds half up to 64
  assert.deepEqual([...c.q], [127, 127, 0, -64, 64, 0]);
  const s0 = Math.fround(1 / 127), s1 = Math.fround(0.5 / 127);
  const e0 = Math.hypot(1 - 127 * s0, -0.5 + 64 * s0);
  const e1 = Math.hypot(0.5 - 127 * s1, 0.25 - 64 * s1);
  assert.ok(Math.abs(c.errNorm[0] - e0) < 1e-15 && Math.abs(c.errNorm[1] - e1) < 1e-15);
  assert.equal(c.errNorm[2], 0);
  assert.deepEqual([...c.norm], [Math.hypot(1, 0.5), Math.hypot(0.5, 0.25), 0]);
  assert.ok(Math.abs(c.qNorm[0] - Math.hypot(127 * s0, 64 * s0)) < 1e-15);
  assert.throws(() => quantizeColumns(w, 2, 2), /expected 2×2 = 4 weights, found 6/);
});
