/**
 * A batch's sparse latents in one structure: every token's active latents
 * back to back (compressed sparse rows), instead of an object and two
 * typed-array views per token. An encoder on the serving path hands its
 * batches over this way, and readers take a token's entries as a span of the
 * batch's arrays, so no per-token object is made. `LatentTable` accepts either
 * shape, so code that builds per-token rows (traces, tests, the CLI) keeps
 * them. Pure.
 *
 * @module
 */
import { NO_LATENTS, type SparseLatents } from "./sae.ts";

/** A token's entries: `indices[from..to)` and `values[from..to)`, indices ascending. */
export interface LatentSpan {
  indices: Uint32Array;
  values: Float32Array;
  from: number;
  to: number;
}

/** Thrown when the arrays of a {@linkcode LatentRows} do not fit together. */
export class LatentRowsError extends Error {
  override name = "LatentRowsError";
}

/**
 * The sparse latents of `ends.length` tokens: token `t`'s are
 * `indices[start(t)..end(t))` with their `values`, indices ascending.
 *
 * @example
 * ```ts
 * import { LatentRows } from "./latent_rows.ts";
 * const rows = new LatentRows(
 *   Uint32Array.of(3, 9, 4),
 *   Float32Array.of(0.5, 2, 1),
 *   Uint32Array.of(2, 2, 3), // token 0: latents 3 and 9; token 1: none; token 2: latent 4
 * );
 * rows.length; // 3
 * rows.row(2).indices; // Uint32Array [4]
 * ```
 */
export class LatentRows {
  readonly indices: Uint32Array;
  readonly values: Float32Array;
  /** One past each token's last entry (token `t` starts where token `t - 1` ends; 0 for the first). */
  readonly ends: Uint32Array;

  constructor(indices: Uint32Array, values: Float32Array, ends: Uint32Array) {
    const total = ends.length === 0 ? 0 : ends[ends.length - 1];
    if (indices.length !== values.length || total !== indices.length) {
      throw new LatentRowsError(
        `latent rows: expected ${total} indices and values (the last token's end), found ${indices.length} indices and ${values.length} values`,
      );
    }
    for (let t = 1; t < ends.length; t++) {
      if (ends[t] < ends[t - 1]) {
        throw new LatentRowsError(
          `latent rows: expected token ends that never decrease, found ${ends[t]} after ${
            ends[t - 1]
          } at token ${t}`,
        );
      }
    }
    this.indices = indices;
    this.values = values;
    this.ends = ends;
  }

  /** Tokens. */
  get length(): number {
    return this.ends.length;
  }

  /** Offset of token `t`'s first entry. */
  start(t: number): number {
    return t === 0 ? 0 : this.ends[t - 1];
  }

  /** Offset one past token `t`'s last entry. */
  end(t: number): number {
    return this.ends[t];
  }

  /**
   * Token `t` as its own row (views of this batch; {@linkcode NO_LATENTS}
   * when it has none). A RangeError for a token the batch does not hold.
   */
  row(t: number): Readonly<SparseLatents> {
    if (!Number.isInteger(t) || t < 0 || t >= this.ends.length) {
      throw new RangeError(`latent rows: expected a token in [0, ${this.ends.length}), found ${t}`);
    }
    const from = this.start(t), to = this.ends[t];
    if (from === to) return NO_LATENTS;
    return { indices: this.indices.subarray(from, to), values: this.values.subarray(from, to) };
  }

  /** Every token as its own row (see {@linkcode LatentRows.row}). */
  toArray(): SparseLatents[] {
    const out = new Array<SparseLatents>(this.length);
    for (let t = 0; t < this.length; t++) out[t] = this.row(t);
    return out;
  }

  /** The same tokens from per-token rows (copied). */
  static from(rows: readonly Readonly<SparseLatents>[]): LatentRows {
    const ends = new Uint32Array(rows.length);
    let total = 0;
    for (let t = 0; t < rows.length; t++) ends[t] = total += rows[t].indices.length;
    const indices = new Uint32Array(total);
    const values = new Float32Array(total);
    for (let t = 0; t < rows.length; t++) {
      const from = t === 0 ? 0 : ends[t - 1];
      indices.set(rows[t].indices, from);
      values.set(rows[t].values, from);
    }
    return new LatentRows(indices, values, ends);
  }
}

/**
 * A batch of no tokens, shared (frozen; its arrays are empty).
 *
 * @example
 * ```ts
 * import { NO_ROWS } from "./latent_rows.ts";
 * NO_ROWS.length; // 0
 * ```
 */
export const NO_ROWS: LatentRows = Object.freeze(
  new LatentRows(new Uint32Array(0), new Float32Array(0), new Uint32Array(0)),
);

/** An encoder's rows for a batch, in either shape. */
export type LatentTable = LatentRows | readonly Readonly<SparseLatents>[];

/**
 * Point `span` at token `t` of `table`. Returns false (and leaves `span`
 * alone) when the table is absent or has no token `t`.
 *
 * @example
 * ```ts
 * import { LatentRows, type LatentSpan, readRow } from "./latent_rows.ts";
 * const rows = new LatentRows(Uint32Array.of(7), Float32Array.of(1.5), Uint32Array.of(0, 1));
 * const span: LatentSpan = { indices: rows.indices, values: rows.values, from: 0, to: 0 };
 * readRow(rows, 1, span); // true: span.from 0, span.to 1
 * ```
 */
export function readRow(table: LatentTable | undefined, t: number, span: LatentSpan): boolean {
  if (table === undefined || t < 0 || t >= table.length) return false;
  if (table instanceof LatentRows) {
    span.indices = table.indices;
    span.values = table.values;
    span.from = table.start(t);
    span.to = table.ends[t];
    return true;
  }
  const row = (table as readonly Readonly<SparseLatents>[])[t];
  if (row === undefined) return false;
  span.indices = row.indices;
  span.values = row.values;
  span.from = 0;
  span.to = row.indices.length;
  return true;
}

/** A span over nothing, to fill with {@linkcode readRow}. */
export function emptySpan(): LatentSpan {
  return { indices: NO_LATENTS.indices, values: NO_LATENTS.values, from: 0, to: 0 };
}

/**
 * Value of latent `index` in a span (0 when absent), by binary search over
 * its ascending indices.
 *
 * @example
 * ```ts
 * import { spanValue } from "./latent_rows.ts";
 * spanValue({ indices: Uint32Array.of(2, 5), values: Float32Array.of(1, 3), from: 0, to: 2 }, 5); // 3
 * ```
 */
export function spanValue(span: LatentSpan, index: number): number {
  const { indices, values, from, to } = span;
  // probes report every score: the common case is a direct hit
  const direct = from + index;
  if (direct < to && indices[direct] === index) return values[direct];
  let lo = from;
  let hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (indices[mid] < index) lo = mid + 1;
    else hi = mid;
  }
  return lo < to && indices[lo] === index ? values[lo] : 0;
}

/**
 * Token `t` of `table` as its own row, or undefined when there is none: for
 * readers off the hot path (alerts, displays).
 *
 * @example
 * ```ts
 * import { LatentRows, rowOf } from "./latent_rows.ts";
 * rowOf(new LatentRows(Uint32Array.of(1), Float32Array.of(2), Uint32Array.of(1)), 0)?.values; // [2]
 * ```
 */
export function rowOf(
  table: LatentTable | undefined,
  t: number,
): Readonly<SparseLatents> | undefined {
  if (table === undefined || t < 0 || t >= table.length) return undefined;
  return table instanceof LatentRows
    ? table.row(t)
    : (table as readonly Readonly<SparseLatents>[])[t];
}

/**
 * The rows of consecutive parts of one batch as one table: a single part as
 * it is, else one {@linkcode LatentRows} (copied).
 *
 * @example
 * ```ts
 * import { joinTables, LatentRows } from "./latent_rows.ts";
 * const a = new LatentRows(Uint32Array.of(1), Float32Array.of(2), Uint32Array.of(1));
 * joinTables([a, a]).length; // 2
 * ```
 */
export function joinTables(parts: readonly LatentTable[]): LatentTable {
  if (parts.length === 1) return parts[0];
  let tokens = 0, total = 0;
  const span = emptySpan();
  for (const p of parts) {
    tokens += p.length;
    for (let t = 0; t < p.length; t++) if (readRow(p, t, span)) total += span.to - span.from;
  }
  const indices = new Uint32Array(total);
  const values = new Float32Array(total);
  const ends = new Uint32Array(tokens);
  let at = 0, row = 0;
  for (const p of parts) {
    for (let t = 0; t < p.length; t++, row++) {
      if (readRow(p, t, span)) {
        indices.set(span.indices.subarray(span.from, span.to), at);
        values.set(span.values.subarray(span.from, span.to), at);
        at += span.to - span.from;
      }
      ends[row] = at;
    }
  }
  return new LatentRows(indices, values, ends);
}
