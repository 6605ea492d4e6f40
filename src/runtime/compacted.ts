/**
 * The layout in which both GPU encoders read a batch's active latents back:
 * `rows` 32-bit counts, then `rows × cap` u32 indices, then `rows × cap` f32
 * values, each token's entries ascending and at most `cap` of them.
 *
 * @module
 */
import type { SparseLatents } from "../core/sae.ts";

/** Bytes of a compacted batch of `rows` tokens with room for `cap` latents each. */
export function compactedBytes(rows: number, cap: number): number {
  return rows * (1 + 2 * cap) * 4;
}

/**
 * One {@linkcode SparseLatents} per token (views into `buf`), and the largest
 * count: above `cap`, the batch must be compacted again with more room.
 *
 * @example
 * ```ts
 * const buf = new ArrayBuffer(compactedBytes(1, 2));
 * new Uint32Array(buf, 0, 3).set([1, 7, 0]); // one active latent, index 7
 * new Float32Array(buf, 12, 2).set([0.5, 0]);
 * unpackCompacted(buf, 1, 2).latents[0].indices; // Uint32Array [7]
 * ```
 */
export function unpackCompacted(
  buf: ArrayBuffer,
  rows: number,
  cap: number,
): { latents: SparseLatents[]; maxCount: number } {
  const counts = new Uint32Array(buf, 0, rows);
  const idx = new Uint32Array(buf, rows * 4, rows * cap);
  const val = new Float32Array(buf, rows * 4 * (1 + cap), rows * cap);
  let maxCount = 0;
  const latents: SparseLatents[] = new Array(rows);
  for (let r = 0; r < rows; r++) {
    const c = counts[r];
    if (c > maxCount) maxCount = c;
    const k = Math.min(c, cap);
    latents[r] = {
      indices: idx.subarray(r * cap, r * cap + k),
      values: val.subarray(r * cap, r * cap + k),
    };
  }
  return { latents, maxCount };
}
