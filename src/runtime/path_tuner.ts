/**
 * Chooses, per batch size, the faster of two exact encode paths by timing
 * them on live batches: both give the f32 encode's results, so only speed
 * is at stake. Per size class (⌊log₂ tokens⌋) each path is timed on
 * `samples` batches after `warmup` untimed ones (default 2: one was too few
 * for a 1 GiB SAE's recomputation to warm up); then the one with the lower
 * best time per token runs (other work on the machine only ever adds time,
 * so the best of the recent samples is the path's own speed), and the
 * other is timed again from the 16th and 64th batch of the class (a path
 * whose JavaScript was still being compiled when first timed, 4× slower at
 * one token in one bench sitting, gets its second look early) and then
 * every `retryEvery` batches (the machine's load changes), or every
 * `retryEvery` × the other path's slowdown where it is slower (up to
 * {@linkcode MAX_RETRY_STRETCH} times as far apart): a look costs the same
 * share of the time at any gap up to 8×. At 128 tokens the exact f32 encode
 * of a 768→24576 JumpReLU took 47 ms against the int8 candidates' 10.4, so a
 * look every 256 batches spent 8.5% of the time on f32, and each look put
 * five batches 4.5× slower into the stream.
 *
 * A retry runs `warmup` untimed batches, then `samples` timed ones, in a
 * row: a path coming back after a stretch of the other is slow for its
 * first few batches (a 768→24576 TopK's int8 path at 16 tokens: 4–17 ms,
 * then 3.5–5, against 2.4 warm), and a retry timing only those kept the
 * slower f32 path running for good once it had won the first look, since
 * every later look at int8 came straight after f32 again.
 *
 * Each path keeps its last `keep` times (default 16), not only the last
 * `samples`: with three, three batches slowed by other work on the machine
 * (5 ms at 16 tokens) made the running path look slower than the other's
 * time from its last retry, and a 768→24576 TopK encoder then ran its path
 * twice as slow for the ~250 batches until the next retry, several times in
 * ten seconds. After a switch the path left behind is timed again
 * {@linkcode SECOND_LOOK_AFTER} batches later, then after twice as many, and
 * so on up to `retryEvery`: a switch that a longer stretch of other work
 * caused is undone within about twice the stretch. A path's times older
 * than two retry intervals are dropped (all but its last `samples`), so the
 * path not running is judged by its recent retries, not by a time from
 * before the input or the machine changed.
 *
 * The schedule counts picks, not recorded batches, so encodes in flight
 * together (picks running ahead of their records) still meet every retry.
 *
 * @module
 */

/** Picks of a class (counted before the pick) after which the slower path is timed again early. */
const EARLY_RETRIES = new Set([15, 63]);
/** Untimed batches of a path before its timed ones, first look and retries alike (default). */
const DEFAULT_WARMUP = 2;
/** Timed batches of a path per look (default). */
const DEFAULT_SAMPLES = 3;
/**
 * Picks of a size class after which a default {@linkcode PathTuner} has made
 * its first looks and its early retries: from here on it runs the faster
 * path, timing the other only every `retryEvery` (stretched) picks or after a
 * switch. A bench that wants a path's steady speed warms up this far.
 */
export const PICKS_BEFORE_STEADY = Math.max(...EARLY_RETRIES) + DEFAULT_WARMUP + DEFAULT_SAMPLES;
/**
 * The size class a batch of `tokens` is tuned in: ⌊log₂ tokens⌋ (0 for a
 * single token or none).
 *
 * @example
 * ```ts
 * import { sizeClassOf } from "./path_tuner.ts";
 * sizeClassOf(128); // 7
 * sizeClassOf(200); // 7: batches of 128 to 255 tokens share one class
 * ```
 */
export function sizeClassOf(tokens: number): number {
  return 31 - Math.clz32(Math.max(1, tokens));
}
/** Picks after a switch of paths at which the path left behind is timed again. */
export const SECOND_LOOK_AFTER = 16;
/** At most this many times `retryEvery` between two periodic retries of a much slower path. */
export const MAX_RETRY_STRETCH = 8;

/** The two paths. */
export type EncodePath = "int8" | "f32";

/** One kept time: ms per token, and the class's pick count when it was recorded. */
interface Timing {
  perToken: number;
  at: number;
}

interface SizeClass {
  times: Record<EncodePath, Timing[]>;
  seen: Record<EncodePath, number>;
  /** A path's batches still to be recorded that warm a retry up: not kept. */
  untimed: Record<EncodePath, number>;
  /** Picks so far (the schedule's clock). */
  picks: number;
  /** Picks left in the retry under way (the slower path, `warmup` + `samples` batches in a row). */
  retryLeft: number;
  retryPath: EncodePath;
  /** The faster path at the last pick that was not the rest of a retry (null before the first). */
  current: EncodePath | null;
  /** The pick at which the path left behind by a switch is timed again (−1: none due). */
  secondLookAt: number;
  /** Picks from this second look to the next: doubles after each, up to `retryEvery`. */
  lookGap: number;
  /** The pick of the next periodic retry. */
  nextRetryAt: number;
}

/** The lowest time per token among `t`'s. */
function fastest(t: readonly Timing[]): number {
  let best = Infinity;
  for (const x of t) if (x.perToken < best) best = x.perToken;
  return best;
}

/**
 * Per-size-class timing of the two paths.
 *
 * @example
 * ```ts
 * const tuner = new PathTuner();
 * const path = tuner.pick(128); // "int8" until both paths are timed
 * tuner.record(128, path, 12.5);
 * ```
 */
export class PathTuner {
  readonly #classes = new Map<number, SizeClass>();
  readonly #samples: number;
  readonly #retryEvery: number;
  readonly #warmup: number;
  readonly #keep: number;

  constructor(
    opts: { samples?: number; retryEvery?: number; warmup?: number; keep?: number } = {},
  ) {
    this.#samples = opts.samples ?? DEFAULT_SAMPLES;
    this.#warmup = opts.warmup ?? DEFAULT_WARMUP;
    this.#retryEvery = opts.retryEvery ?? 256;
    this.#keep = Math.max(this.#samples, opts.keep ?? 16);
  }

  #class(tokens: number): SizeClass {
    const key = sizeClassOf(tokens);
    let c = this.#classes.get(key);
    if (!c) {
      c = {
        times: { int8: [], f32: [] },
        seen: { int8: 0, f32: 0 },
        untimed: { int8: 0, f32: 0 },
        picks: 0,
        retryLeft: 0,
        retryPath: "int8",
        current: null,
        secondLookAt: -1,
        lookGap: SECOND_LOOK_AFTER,
        nextRetryAt: this.#retryEvery - 1,
      };
      this.#classes.set(key, c);
    }
    return c;
  }

  /** The path the next batch of `tokens` should take. */
  pick(tokens: number): EncodePath {
    const c = this.#class(tokens);
    const n = c.picks++;
    for (const p of ["int8", "f32"] as const) {
      if (c.seen[p] < this.#warmup || c.times[p].length < this.#samples) return p;
    }
    if (c.retryLeft > 0) {
      // the rest of a retry: its warm-up, then its timed batches
      c.retryLeft--;
      return c.retryPath;
    }
    const best = fastest(c.times.int8) <= fastest(c.times.f32) ? "int8" : "f32";
    const other = best === "int8" ? "f32" : "int8";
    const periodic = n >= c.nextRetryAt;
    if (periodic) {
      // as far apart as the other path is slower: each look costs the same share of the time
      const slowdown = fastest(c.times[other]) / fastest(c.times[best]);
      // NaN (both 0 or both Infinity) or not slower: the plain interval
      const stretch = slowdown > 1 ? Math.min(MAX_RETRY_STRETCH, slowdown) : 1;
      c.nextRetryAt = n + Math.round(this.#retryEvery * stretch);
    }
    const switched = c.current !== null && c.current !== best;
    if (switched) {
      c.lookGap = SECOND_LOOK_AFTER;
      c.secondLookAt = n + c.lookGap;
      // the stretch was for the old pair of times: no later than the plain interval from here
      c.nextRetryAt = Math.min(c.nextRetryAt, n + this.#retryEvery);
    }
    c.current = best;
    if (
      n === c.secondLookAt || EARLY_RETRIES.has(n) || periodic
    ) {
      // any retry is the second look due (but not one on the very pick that switched: the
      // stretch of other work that caused the switch is most likely still on); a look that fell
      // inside that stretch is followed by others, further apart
      if (c.secondLookAt >= 0 && !switched) {
        c.lookGap *= 2;
        c.secondLookAt = c.lookGap < this.#retryEvery ? n + c.lookGap : -1;
      }
      c.retryLeft = this.#warmup + this.#samples - 1;
      // set, not added: a record lost to a failed encode must not leave later batches untimed
      c.untimed[other] = this.#warmup;
      return c.retryPath = other;
    }
    return best;
  }

  /**
   * Time a batch of `tokens` took on `path` (ms); the first `warmup` of each
   * path per class and of each retry are not kept, and of the rest the last
   * `keep`, less those older than two retry intervals (the last `samples`
   * are always kept).
   */
  record(tokens: number, path: EncodePath, ms: number): void {
    const c = this.#class(tokens);
    if (c.seen[path]++ < this.#warmup) return;
    if (c.untimed[path] > 0) {
      c.untimed[path]--;
      return;
    }
    const t = c.times[path];
    t.push({ perToken: ms / tokens, at: c.picks });
    const oldest = c.picks - 2 * this.#retryEvery;
    while (t.length > this.#keep || (t.length > this.#samples && t[0].at < oldest)) t.shift();
  }
}
