import assert from "node:assert/strict";
import type { SaeWeights } from "../core/sae.ts";
import { encoderColumns, transpose } from "./matrix.ts";

// W_enc of d_in 2, d_sae 4: row i holds 10·i + j
const sae = {
  dIn: 2,
  dSae: 4,
  wEnc: new Float32Array([0, 1, 2, 3, 10, 11, 12, 13]),
} as SaeWeights;

Deno.test("encoderColumns: the watched columns, in watch order, row by row; no watch is W_enc itself", () => {
  assert.deepEqual([...encoderColumns(sae, new Uint32Array([3, 1]))], [3, 1, 13, 11]);
  assert.equal(encoderColumns(sae, null), sae.wEnc);
  const seen: string[] = [];
  encoderColumns(
    sae,
    new Uint32Array([0]),
    (done, total, phase) => seen.push(`${phase} ${done}/${total}`),
  );
  assert.deepEqual(seen, ["gather 2/2"]);
});

Deno.test("transpose: a 3×130 matrix (three blocks wide) by hand", () => {
  const rows = 3, cols = 130;
  const a = Float32Array.from({ length: rows * cols }, (_, i) => i);
  const t = transpose(a, rows, cols);
  for (let c = 0; c < cols; c++) {
    for (let r = 0; r < rows; r++) assert.equal(t[c * rows + r], r * cols + c, `(${r}, ${c})`);
  }
});
