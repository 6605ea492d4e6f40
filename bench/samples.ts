/**
 * Latency samples kept outside V8's heap. The end-to-end bench measures in
 * the sidecar's own process, and a row of two minutes at half load is about
 * 280,000 frames: as JS arrays, three lists grown by doubling, each growth a
 * large object in the old generation that brings the sidecar's next full
 * collection closer (docs/performance-history.md, "Eighteenth sitting": about 3.5 of
 * the 15 bytes per token that reached the old generation). A `Samples` is one
 * `Float64Array` allocated and touched once, reused row after row.
 *
 * @module
 */

/**
 * A list of numbers in a preallocated `Float64Array` (grown by doubling only
 * when full).
 *
 * @example
 * ```ts
 * import { Samples } from "./samples.ts";
 * const s = new Samples(4);
 * for (const v of [3, 10, 1.5]) s.push(v);
 * s.sorted(); // Float64Array [1.5, 3, 10]
 * s.clear(); // s.length 0, the buffer kept
 * ```
 */
export class Samples {
  #data: Float64Array;
  #length = 0;

  /** Room for `capacity` samples, its pages touched now (so a row's RSS does not grow by them). */
  constructor(capacity: number) {
    this.#data = new Float64Array(Math.max(1, capacity)).fill(0);
  }

  push(value: number): void {
    if (this.#length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#length++] = value;
  }

  get length(): number {
    return this.#length;
  }

  /** Room before the next growth. */
  get capacity(): number {
    return this.#data.length;
  }

  /** Forget the samples, keep the buffer. */
  clear(): void {
    this.#length = 0;
  }

  /** The samples in ascending order (sorted in place; a view, valid until the next push or clear). */
  sorted(): Float64Array {
    return this.#data.subarray(0, this.#length).sort();
  }
}

/**
 * The `p`-th percentile of ascending `sorted` values: the value at index
 * ⌊p/100 · n⌋ (the last for p = 100), the bench's one definition for its
 * rows, the generator's lag and their pooled windows alike; null when empty.
 *
 * @example
 * ```ts
 * import { percentileOfSorted } from "./samples.ts";
 * percentileOfSorted([1, 2, 3, 4], 50); // 3
 * percentileOfSorted([], 99); // null
 * ```
 */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number | null {
  return sorted.length === 0
    ? null
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
