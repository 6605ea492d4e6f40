/**
 * Reshaping the encoder's weights once, at load: a column gather and a
 * cache-blocked transpose, shared by the graph builder, the candidate,
 * watched and CUDA encoders.
 *
 * @module
 */
import type { SaeWeights } from "../core/sae.ts";

/** Progress callback: `done` of `total` units of the named phase. */
export type ProgressFn = (done: number, total: number, phase: string) => void;

/**
 * `W_enc[:, S]` as a new `[dIn, |S|]` matrix, or `W_enc` itself when `S` is null.
 *
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * const sae = randomSae({ architecture: "standard", dIn: 4, dSae: 8, seed: 1 });
 * encoderColumns(sae, new Uint32Array([2, 5])).length; // 8: 4 rows of 2
 * ```
 */
export function encoderColumns(
  sae: SaeWeights,
  watch: Uint32Array | null,
  onProgress?: ProgressFn,
): Float32Array {
  if (!watch) return sae.wEnc;
  const { dIn, dSae } = sae;
  const s = watch.length;
  const out = new Float32Array(dIn * s);
  for (let j = 0; j < dIn; j++) {
    const row = j * dSae;
    for (let c = 0; c < s; c++) out[j * s + c] = sae.wEnc[row + watch[c]];
    if ((j & 255) === 255) onProgress?.(j + 1, dIn, "gather");
  }
  onProgress?.(dIn, dIn, "gather");
  return out;
}

/**
 * `[rows, cols]` row-major to `[cols, rows]` row-major, in blocks so both
 * sides stay in cache.
 *
 * @example
 * ```ts
 * transpose(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c];
      }
    }
  }
  return out;
}
