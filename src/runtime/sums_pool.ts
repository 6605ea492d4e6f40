/**
 * A few reusable int32 buffers for the native first pass's sums.
 *
 * Why: a fresh buffer is fresh pages. TopK 4096→65536 at batch 128 sums
 * into 32 MiB per batch, and the kernel faults in and zeroes every page of
 * a new `ArrayBuffer` before the product writes it (docs/performance-history.md).
 *
 * @module
 */
import { alignedArray } from "./aligned.ts";

/**
 * Int32 buffers handed out as views of exactly the length asked for, each
 * starting on a cache line (the kernel's 512-bit stores), and kept for
 * reuse once given back (at most `keep` of them).
 *
 * @example
 * ```ts
 * const pool = new SumsPool(2);
 * const sums = pool.take(1024); // length 1024
 * pool.give(sums);
 * pool.take(512).buffer === sums.buffer; // true: the same memory again
 * ```
 */
export class SumsPool {
  readonly #free: Int32Array[] = [];
  readonly #keep: number;

  constructor(keep: number) {
    this.#keep = keep;
  }

  /** A view of `length` int32s, of a free buffer large enough or a new one. */
  take(length: number): Int32Array {
    // the smallest free buffer that is large enough (they are kept largest first)
    let at = -1;
    this.#free.forEach((b, i) => b.length >= length && (at = i));
    const buffer = at >= 0
      ? this.#free.splice(at, 1)[0]
      : alignedArray(Int32Array, length, { hugePages: true });
    return buffer.subarray(0, length);
  }

  /** Give back a view that {@linkcode take} handed out; the largest buffers are kept. */
  give(view: Int32Array): void {
    if (this.#free.some((b) => b.buffer === view.buffer)) return; // given back twice
    // from the view's start, which take() aligned, to the buffer's end
    this.#free.push(new Int32Array(view.buffer, view.byteOffset));
    this.#free.sort((a, b) => b.length - a.length);
    this.#free.length = Math.min(this.#free.length, this.#keep);
  }

  /** Buffers free for reuse now. */
  get free(): number {
    return this.#free.length;
  }
}
