/**
 * Per-column symmetric int8 quantization of an encoder matrix, with the
 * exact norms the candidate bound needs (`candidate_graph.ts`).
 *
 * @module
 */

/** `W [rows, cols]` quantized per column, and its error and norms (f64 sums). */
export interface QuantizedColumns {
  /** `round(W[i][j] / scale[j])` in −127..127, `[rows, cols]` row-major like W. */
  q: Int8Array;
  /** `max_i |W[i][j]| / 127` (1 for an all-zero column), as f32. */
  scale: Float32Array;
  /** `‖W[:, j] − scale[j]·q[:, j]‖₂`. */
  errNorm: Float64Array;
  /** `‖W[:, j]‖₂`. */
  norm: Float64Array;
  /** `‖scale[j]·q[:, j]‖₂`. */
  qNorm: Float64Array;
}

/**
 * Quantize the columns of `w` (`[rows, cols]`, row-major).
 *
 * @example
 * ```ts
 * const { q, scale, errNorm } = quantizeColumns(new Float32Array([1, 0.5, -0.5, 0]), 2, 2);
 * // column 0 is (1, −0.5): scale 1/127, q (127, −64), error |−0.5 + 64/127|
 * [q[0], q[2]]; // [127, -64]
 * ```
 */
export function quantizeColumns(w: Float32Array, rows: number, cols: number): QuantizedColumns {
  if (w.length !== rows * cols) {
    throw new RangeError(`expected ${rows}×${cols} = ${rows * cols} weights, found ${w.length}`);
  }
  const scale = new Float32Array(cols);
  const max = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) {
      const a = Math.abs(w[row + j]);
      if (a > max[j]) max[j] = a;
    }
  }
  for (let j = 0; j < cols; j++) scale[j] = max[j] > 0 ? max[j] / 127 : 1;
  const q = new Int8Array(rows * cols);
  const err = new Float64Array(cols);
  const norm = new Float64Array(cols);
  const qNorm = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) {
      const v = w[row + j];
      const s = scale[j];
      const k = Math.max(-127, Math.min(127, Math.round(v / s)));
      q[row + j] = k;
      const d = v - s * k;
      err[j] += d * d;
      norm[j] += v * v;
      qNorm[j] += (s * k) ** 2;
    }
  }
  for (let j = 0; j < cols; j++) {
    err[j] = Math.sqrt(err[j]);
    norm[j] = Math.sqrt(norm[j]);
    qNorm[j] = Math.sqrt(qNorm[j]);
  }
  return { q, scale, errNorm: err, norm, qNorm };
}
