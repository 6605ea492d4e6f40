/**
 * The k largest of a few hundred scored latents, as the ONNX TopK operator
 * ranks them (larger score first, ties: lower latent first), in O(n log k)
 * with a binary min-heap on typed arrays; and TopK rows built from them.
 *
 * @module
 */

/** Whether (a, ia) ranks below (b, ib): a smaller score, or a tie with a larger latent. */
function below(a: number, ia: number, b: number, ib: number): boolean {
  return a < b || (a === b && ia > ib);
}

/**
 * Positions (into `scores`/`latents`, from `from` to `to`) of the `k` best,
 * in no particular order, written to `out` (returns how many: min(k, to − from)).
 *
 * @example
 * ```ts
 * const out = new Uint32Array(2);
 * const n = topKPositions(Float32Array.of(1, 5, 3, 5), Uint32Array.of(9, 4, 7, 2), 0, 4, 2, out);
 * [...out.subarray(0, n)].sort(); // [1, 3]: the two 5s (latents 4 and 2)
 * ```
 */
export function topKPositions(
  scores: Float32Array,
  latents: Uint32Array,
  from: number,
  to: number,
  k: number,
  out: Uint32Array,
): number {
  let n = 0;
  const sift = (i: number) => {
    // restore the min-heap below i (root: the worst kept)
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && below(scores[out[l]], latents[out[l]], scores[out[m]], latents[out[m]])) m = l;
      if (r < n && below(scores[out[r]], latents[out[r]], scores[out[m]], latents[out[m]])) m = r;
      if (m === i) return;
      const t = out[i];
      out[i] = out[m];
      out[m] = t;
      i = m;
    }
  };
  for (let p = from; p < to; p++) {
    if (n < k) {
      // push and sift up
      let i = n++;
      out[i] = p;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!below(scores[out[i]], latents[out[i]], scores[out[parent]], latents[out[parent]])) {
          break;
        }
        const t = out[i];
        out[i] = out[parent];
        out[parent] = t;
        i = parent;
      }
    } else if (k > 0 && below(scores[out[0]], latents[out[0]], scores[p], latents[p])) {
      out[0] = p;
      sift(0);
    }
  }
  return n;
}

/** What {@linkcode topKRows} reads: each token's scored latents in slots `base[t]..cursor[t]`. */
export interface ScoredSlots {
  scores: Float32Array;
  latents: Uint32Array;
  base: Uint32Array;
  cursor: Uint32Array;
  k: number;
  /** 1 for a latent to report (absent: all). */
  watch?: Uint8Array | null;
}

/**
 * TopK rows: each token's k best scores (ties: lower latent first), relu'd
 * (zeros dropped), reported by ascending latent.
 *
 * @example
 * ```ts
 * const rows = topKRows({
 *   scores: Float32Array.of(1, -2, 3), latents: Uint32Array.of(7, 4, 9),
 *   base: Uint32Array.of(0), cursor: Uint32Array.of(3), k: 2,
 * });
 * [...rows[0].indices]; // [7, 9]
 * ```
 */
export function topKRows(slots: ScoredSlots): { indices: Uint32Array; values: Float32Array }[] {
  const { scores, latents, base, cursor, k, watch } = slots;
  const tokens = cursor.length;
  const best = new Uint32Array(k);
  const indices = new Uint32Array(tokens * k), values = new Float32Array(tokens * k);
  const out = new Array<{ indices: Uint32Array; values: Float32Array }>(tokens);
  let pos = 0;
  for (let t = 0; t < tokens; t++) {
    const n = topKPositions(scores, latents, base[t], cursor[t], k, best);
    const chosen = Array.from(best.subarray(0, n)).sort((a, b) => latents[a] - latents[b]);
    const start = pos;
    for (const p of chosen) {
      if (scores[p] > 0 && (!watch || watch[latents[p]])) {
        indices[pos] = latents[p];
        values[pos++] = scores[p];
      }
    }
    out[t] = { indices: indices.subarray(start, pos), values: values.subarray(start, pos) };
  }
  return out;
}
