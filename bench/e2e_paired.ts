/**
 * What the sidecar adds to a frame, frame by frame: the end-to-end bench's
 * paired rows (`e2e.ts`) have a bare subscriber in a process of its own
 * (`e2e_bare_reader.ts`) read the very frames the sidecar reads, at the same
 * time. Each frame then has two times on the host clock: when the bare
 * subscriber received it and when the sidecar had encoded and evaluated it.
 * Their difference is what the sidecar added to that frame, with the
 * transport's and the host's share of the same moment taken out; the floor
 * rows (`e2e_windows.ts`) can only subtract a percentile measured in other
 * seconds.
 *
 * @module
 */
import { percentileOfSorted } from "./samples.ts";

/**
 * Pairs of host times (ms), each a frame's publish time (`Lw-Meta-sent`) and
 * when something happened to it, in one preallocated `Float64Array`; pairs
 * past its room are counted, not kept.
 *
 * @example
 * ```ts
 * import { PairLog } from "./e2e_paired.ts";
 * const log = new PairLog(2);
 * log.push(100.5, 101.25);
 * log.length; // 1
 * log.pairs(); // Float64Array [100.5, 101.25]
 * ```
 */
export class PairLog {
  readonly #data: Float64Array;
  #length = 0;
  /** Pairs that found no room. */
  overflow = 0;

  /** Room for `capacity` pairs, its pages touched now (so a row's RSS does not grow by them). */
  constructor(capacity: number) {
    this.#data = new Float64Array(2 * Math.max(1, capacity)).fill(0);
  }

  /** Keep one frame's publish time and the time of what happened to it. */
  push(sent: number, at: number): void {
    if (2 * this.#length === this.#data.length) {
      this.overflow++;
      return;
    }
    this.#data[2 * this.#length] = sent;
    this.#data[2 * this.#length + 1] = at;
    this.#length++;
  }

  /** Pairs kept. */
  get length(): number {
    return this.#length;
  }

  /** The pairs kept, `[sent, at, sent, at, …]` (a view, valid until the next push or clear). */
  pairs(): Float64Array {
    return this.#data.subarray(0, 2 * this.#length);
  }

  /** Forget the pairs (and the overflow), keep the buffer. */
  clear(): void {
    this.#length = 0;
    this.overflow = 0;
  }
}

/** What a paired row records: the sidecar's addition to each frame, and both sides' own latency. */
export interface PairedAdded {
  /** Frames both the sidecar and the bare subscriber timed. */
  paired_frames: number;
  /** Frames only the sidecar timed (the bare subscriber's log full, or it missed them). */
  unpaired_frames: number;
  /**
   * Per frame, evaluated by the sidecar − received by the bare subscriber: p50, p90, p99 (ms).
   * (Not a gating row's `added_*`, which is gated less ungated.)
   */
  frame_added_p50_ms: number | null;
  frame_added_p90_ms: number | null;
  frame_added_p99_ms: number | null;
  /** The bare subscriber's own latency over the paired frames, published → received, p99 (ms). */
  bare_p99_ms: number | null;
  /** The sidecar's latency over the same frames, published → evaluated, p99 (ms). */
  sidecar_p99_ms: number | null;
}

/**
 * Indices of `[key, value, …]` pairs in ascending key order, leaving out keys
 * that are not finite (a NaN would break the sort's order for the rest).
 */
function orderByKey(pairs: Float64Array): Uint32Array {
  const order: number[] = [];
  for (let i = 0; i < pairs.length / 2; i++) if (Number.isFinite(pairs[2 * i])) order.push(i);
  return Uint32Array.from(order).sort((a, b) => pairs[2 * a] - pairs[2 * b]);
}

/**
 * Match the sidecar's frames with the bare subscriber's by publish time and
 * take what the sidecar added to each. Frames published at the same
 * microsecond pair in the order each side logged them (the sort is stable;
 * either way, the same moment); a publish time that is not a finite number
 * pairs with nothing.
 *
 * @example
 * ```ts
 * import { pairedAdded } from "./e2e_paired.ts";
 * // the sidecar: published 10 → evaluated 10.9; published 20 → evaluated 23
 * const sidecar = new Float64Array([10, 10.9, 20, 23]);
 * // the bare subscriber: published 10 → received 10.2; published 20 → received 22.5
 * const bare = new Float64Array([20, 22.5, 10, 10.2]);
 * const r = pairedAdded(sidecar, bare);
 * r.paired_frames; // 2
 * r.frame_added_p99_ms; // 0.7 (to rounding): 10.9 − 10.2 is larger than 23 − 22.5
 * ```
 */
export function pairedAdded(sidecar: Float64Array, bare: Float64Array): PairedAdded {
  const s = orderByKey(sidecar), b = orderByKey(bare);
  const added: number[] = [], bareLatency: number[] = [], sidecarLatency: number[] = [];
  let j = 0;
  for (const i of s) {
    const sent = sidecar[2 * i];
    while (j < b.length && bare[2 * b[j]] < sent) j++;
    if (j === b.length || bare[2 * b[j]] !== sent) continue;
    const received = bare[2 * b[j] + 1], evaluated = sidecar[2 * i + 1];
    added.push(evaluated - received);
    bareLatency.push(received - sent);
    sidecarLatency.push(evaluated - sent);
    j++;
  }
  const sorted = (xs: number[]) => Float64Array.from(xs).sort();
  const a = sorted(added);
  return {
    paired_frames: a.length,
    unpaired_frames: sidecar.length / 2 - a.length,
    frame_added_p50_ms: percentileOfSorted(a, 50),
    frame_added_p90_ms: percentileOfSorted(a, 90),
    frame_added_p99_ms: percentileOfSorted(a, 99),
    bare_p99_ms: percentileOfSorted(sorted(bareLatency), 99),
    sidecar_p99_ms: percentileOfSorted(sorted(sidecarLatency), 99),
  };
}
