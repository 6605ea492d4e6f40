/**
 * An encoder's output read into sparse per-token latents ({@linkcode LatentRows}):
 * a dense output (every latent of a row, or the watched columns of a watched
 * graph) scanned for its non-zero values, or a TopK output's values and
 * indices sorted by latent. The scan writes into scratch buffers grown
 * geometrically and reused across batches; each batch is copied out of them
 * once, into a buffer of its own, so a later batch never aliases an earlier
 * one.
 *
 * @module
 */
import { LatentRows, NO_ROWS } from "../core/latent_rows.ts";

/**
 * Typed arrays up to this many bytes live inside V8's heap, with no backing
 * store to free (V8's `V8_TYPED_ARRAY_MAX_SIZE_IN_HEAP`, 64 by default).
 */
const ON_HEAP_MAX_BYTES = 64;

/** What a {@linkcode SparseRowsReader} reads. */
export interface SparseRowsOptions {
  /** Latents of the SAE. */
  dSae: number;
  /** Watched dense graphs: output column → SAE latent index (ascending); null for every latent. */
  columns?: Uint32Array | null;
  /** Watched TopK: 1 for a watched latent (the graph is full; reporting is filtered). */
  mask?: Uint8Array | null;
  /** Whether TopK outputs are read (a latent → value table is kept for the sort). */
  topk?: boolean;
}

/**
 * Reads one encoder's outputs into {@linkcode LatentRows}, a batch at a time.
 *
 * @example
 * ```ts
 * import { SparseRowsReader } from "./sparse_rows.ts";
 * const reader = new SparseRowsReader({ dSae: 4 });
 * const rows = reader.fromDense(Float32Array.of(0, 2, 0, 0, 1, 0, 0, 3), 2);
 * rows.row(1).indices; // Uint32Array [0, 3]
 * ```
 */
export class SparseRowsReader {
  readonly #width: number;
  readonly #columns: Uint32Array | null;
  readonly #mask: Uint8Array | null;
  #idx = new Uint32Array(0);
  #val = new Float32Array(0);
  /** Each token's end in `#idx`, for the batch being read. */
  #ends = new Uint32Array(0);
  /** TopK only: latent index → value of the row being sorted. */
  readonly #lookup: Float32Array;

  constructor(opts: SparseRowsOptions) {
    this.#columns = opts.columns ?? null;
    this.#mask = opts.mask ?? null;
    this.#width = this.#columns ? this.#columns.length : opts.dSae;
    this.#lookup = new Float32Array(opts.topk ? opts.dSae : 0);
  }

  /**
   * The non-zero values of a dense output of `tokens` rows (`-0` counts as
   * zero), each row's latents ascending.
   */
  fromDense(dense: Float32Array, tokens: number): LatentRows {
    if (tokens === 0) return NO_ROWS;
    const dSae = this.#width;
    // Trained SAEs fire well under 1% of latents, so skip 8 zeros at a time:
    // OR the bit patterns, dropping the sign so -0 counts as zero, as in `v !== 0`.
    const bits = new Int32Array(dense.buffer, dense.byteOffset, dense.length);
    const ends = this.#endsFor(tokens);
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      // Reserving a whole row up front keeps the inner loops free of checks.
      this.#reserve(pos + dSae);
      const idx = this.#idx;
      const val = this.#val;
      const base = t * dSae;
      const end = base + dSae;
      const end8 = base + (dSae & ~7);
      let b = base;
      for (; b < end8; b += 8) {
        const any = bits[b] | bits[b + 1] | bits[b + 2] | bits[b + 3] | bits[b + 4] | bits[b + 5] |
          bits[b + 6] | bits[b + 7];
        if (any << 1 === 0) continue;
        for (let j = b; j < b + 8; j++) {
          const v = dense[j];
          if (v !== 0) {
            idx[pos] = j - base;
            val[pos] = v;
            pos++;
          }
        }
      }
      for (; b < end; b++) {
        const v = dense[b];
        if (v !== 0) {
          idx[pos] = b - base;
          val[pos] = v;
          pos++;
        }
      }
      ends[t] = pos;
    }
    // Watched graphs: output columns are the watched latents in ascending order,
    // so mapping them back keeps each row sorted.
    const columns = this.#columns;
    if (columns) { for (let p = 0; p < pos; p++) this.#idx[p] = columns[this.#idx[p]]; }
    return this.#copyOut(tokens, pos);
  }

  /**
   * A TopK output (`k` values and their latent indices per row) with its
   * zeros dropped, each row's latents ascending; watched TopK keeps only
   * the watched latents.
   */
  fromTopK(values: Float32Array, indices: BigInt64Array, tokens: number): LatentRows {
    if (tokens === 0) return NO_ROWS;
    const k = values.length / tokens;
    // Indices are < 2^32 and little-endian: read the low word, no BigInt boxing.
    const words = new Uint32Array(indices.buffer, indices.byteOffset, indices.length * 2);
    const lookup = this.#lookup;
    const mask = this.#mask;
    this.#reserve(tokens * k);
    const idx = this.#idx;
    const val = this.#val;
    const ends = this.#endsFor(tokens);
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      const start = pos;
      for (let p = t * k, end = p + k; p < end; p++) {
        const v = values[p];
        if (v !== 0) {
          const i = words[2 * p];
          if (mask && !mask[i]) continue;
          idx[pos++] = i;
          lookup[i] = v;
        }
      }
      idx.subarray(start, pos).sort();
      for (let p = start; p < pos; p++) val[p] = lookup[idx[p]];
      ends[t] = pos;
    }
    return this.#copyOut(tokens, pos);
  }

  #reserve(capacity: number): void {
    if (this.#idx.length >= capacity) return;
    const size = Math.max(capacity, this.#idx.length * 2);
    const idx = new Uint32Array(size);
    const val = new Float32Array(size);
    idx.set(this.#idx);
    val.set(this.#val);
    this.#idx = idx;
    this.#val = val;
  }

  #endsFor(tokens: number): Uint32Array {
    if (this.#ends.length < tokens) {
      this.#ends = new Uint32Array(Math.max(tokens, 2 * this.#ends.length));
    }
    return this.#ends;
  }

  /**
   * The batch out of the scratch: its token ends, `total` indices and values.
   * Each buffer a batch leaves behind costs the next scavenge a backing store
   * to free, which at half load was about 1.0 ms of a 1.65–1.73 ms pause
   * (docs/performance.md, "One buffer per batch"): arrays small enough to
   * live in V8's heap (a decode step's) are made as such, with no backing
   * store, and larger ones are views of one buffer, not three.
   */
  #copyOut(tokens: number, total: number): LatentRows {
    const ends = this.#ends.subarray(0, tokens);
    if (tokens * 4 <= ON_HEAP_MAX_BYTES && total * 4 <= ON_HEAP_MAX_BYTES) {
      return new LatentRows(
        this.#idx.slice(0, total),
        this.#val.slice(0, total),
        ends.slice(),
      );
    }
    const buffer = new ArrayBuffer((tokens + 2 * total) * 4);
    const out = new Uint32Array(buffer, 0, tokens);
    const indices = new Uint32Array(buffer, tokens * 4, total);
    const values = new Float32Array(buffer, (tokens + total) * 4, total);
    out.set(ends);
    indices.set(this.#idx.subarray(0, total));
    values.set(this.#val.subarray(0, total));
    return new LatentRows(indices, values, out);
  }
}
