/**
 * Whether a small product runs on this thread alone or is split with FFI
 * worker threads, decided by timing both. Handing part of a call to a
 * worker and hearing back costs about 0.1 ms; one token of 768 → 24576
 * (18.9M multiply-adds) took 0.19 ms on one thread of one host and 0.66 ms
 * on another, where splitting it took 0.45 ms (docs/performance-history.md,
 * twenty-sixth sitting).
 * No fixed threshold is right on both, so below the size where splitting
 * always pays, each size tries both ways a few times and keeps the faster,
 * and tries again now and then: a trial that meets a busy second core (an
 * onnxruntime session that lets its idle threads spin keeps one busy for
 * some 30 ms after each run) measures the split at its worst, and a host's
 * load changes.
 *
 * @module
 */

/** How a product runs: on this thread alone, or split across threads. */
export type Split = "one" | "split";

/** Options of {@linkcode SplitTuner}. */
export interface SplitTunerOptions {
  /**
   * Untimed calls each way before the timed ones: cold caches and compilation, and the encode
   * path tuner's first looks at the f32 path, which leave the next products slower for a few
   * calls. @default 8
   */
  warmup?: number;
  /** Timed calls each way; the faster median wins. @default 7 */
  samples?: number;
  /** At most this many sizes are tuned; any other runs on one thread. @default 64 */
  maxKeys?: number;
  /** Calls of a size between its choice and its next trial. @default 1024 */
  recheckEvery?: number;
}

interface Trial {
  calls: number;
  one: number[];
  split: number[];
}

/**
 * Alternates the two ways for a size's first calls, then keeps the one with
 * the lower median time.
 *
 * @example
 * ```ts
 * const tuner = new SplitTuner({ warmup: 0, samples: 1 });
 * tuner.record(1, tuner.choose(1), 0.9); // "one" first
 * tuner.record(1, tuner.choose(1), 0.7); // then "split"
 * tuner.choose(1); // "split" from now on
 * ```
 */
export class SplitTuner {
  readonly #warmup: number;
  readonly #samples: number;
  readonly #maxKeys: number;
  readonly #trials = new Map<number, Trial>();
  readonly #chosen = new Map<number, { way: Split; calls: number }>();
  readonly #recheckEvery: number;

  constructor(opts: SplitTunerOptions = {}) {
    this.#warmup = opts.warmup ?? 8;
    this.#samples = opts.samples ?? 7;
    this.#maxKeys = opts.maxKeys ?? 64;
    this.#recheckEvery = opts.recheckEvery ?? 1024;
    if (
      !(this.#samples >= 1 && this.#warmup >= 0 && this.#maxKeys >= 1 && this.#recheckEvery >= 1)
    ) {
      throw new RangeError(
        `SplitTuner: expected samples ≥ 1, warmup ≥ 0, maxKeys ≥ 1 and recheckEvery ≥ 1, found ` +
          `${this.#samples}, ${this.#warmup}, ${this.#maxKeys} and ${this.#recheckEvery}`,
      );
    }
  }

  /** The way to run the next call of size `key`. */
  choose(key: number): Split {
    const chosen = this.#chosen.get(key);
    if (chosen !== undefined) {
      if (chosen.calls++ < this.#recheckEvery) return chosen.way;
      // time both ways again; the size keeps its slot among maxKeys
      this.#chosen.delete(key);
      this.#trials.set(key, { calls: 0, one: [], split: [] });
    }
    let trial = this.#trials.get(key);
    if (trial === undefined) {
      if (this.#trials.size + this.#chosen.size >= this.#maxKeys) return "one";
      this.#trials.set(key, trial = { calls: 0, one: [], split: [] });
    }
    return trial.calls % 2 === 0 ? "one" : "split";
  }

  /** Whether calls of size `key` are still being timed (then pass their times to `record`). */
  tuning(key: number): boolean {
    return this.#trials.has(key);
  }

  /** A call of size `key` that ran `split` took `ms`. */
  record(key: number, split: Split, ms: number): void {
    const trial = this.#trials.get(key);
    if (trial === undefined) return;
    trial.calls++;
    if (trial.calls > 2 * this.#warmup) trial[split].push(ms);
    if (trial.one.length < this.#samples || trial.split.length < this.#samples) return;
    this.#trials.delete(key);
    const way = median(trial.split) < median(trial.one) ? "split" : "one";
    this.#chosen.set(key, { way, calls: 0 });
  }

  /** The way chosen for size `key` by its last trial; undefined while it is timed. */
  chosen(key: number): Split | undefined {
    return this.#chosen.get(key)?.way;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
