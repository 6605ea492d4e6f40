/**
 * Pooling state for one signal test in one request, updated lazily: the
 * engine calls {@linkcode PoolState.push} only on tokens where the signal is
 * present (an SAE latent that is active, every token for a probe) and
 * {@linkcode PoolState.read} only on tokens where a rule is evaluated. The
 * tokens in between read 0 and are accounted for when the state is next
 * touched, so that a read gives the value a per-token update would have given.
 *
 * Window semantics (shared by every kind): the request's tokens for a rule
 * start at `start` (its first token in the rule's scope); tokens before
 * `start` do not exist, so the window at `t` is positions
 * `max(start, t−N+1)..t` and holds `n = min(N, t−start+1)` tokens. A mean
 * divides by `n`.
 *
 * Exactness: max, mean, count and rolling_mean_max are computed from the
 * stored nonzero entries in position order, which gives bit-for-bit the value
 * a per-token pass gives (adding 0 to a float sum is exact). EMA steps over
 * a gap of up to 32 zero tokens exactly as a per-token pass does; a longer
 * gap decays with one `r^g` where a per-token pass multiplies by `r` `g`
 * times, and the two differ by a few ulps (O(1) per touch either way).
 *
 * @module
 */
import type { Pool } from "./ast.ts";

/** The pooled value of one signal test within one request. */
export interface PoolState {
  /** Record value `v` at position `t` (`t` greater than every position pushed or read before). */
  push(t: number, v: number, start: number): void;
  /** The pooled value at position `t` (≥ every position pushed before). */
  read(t: number, start: number): number;
}

/**
 * A fresh state for `pool` (every earlier token reads 0).
 *
 * @example
 * ```ts
 * const s = createPoolState({ kind: "max", window: 2 });
 * s.push(1, 4, 0);
 * s.read(2, 0); // 4: positions 1..2 hold 4, 0
 * s.read(3, 0); // 0
 * ```
 */
export function createPoolState(pool: Pool): PoolState {
  switch (pool.kind) {
    case "token":
      return new TokenPool();
    case "ema":
      return new EmaPool(pool.halfLife);
    case "max":
    case "mean":
    case "count":
    case "rolling_mean_max":
      return new WindowPool(pool);
  }
}

class TokenPool implements PoolState {
  #t = -1;
  #v = 0;
  push(t: number, v: number): void {
    this.#t = t;
    this.#v = v;
  }
  read(t: number): number {
    return t === this.#t ? this.#v : 0;
  }
}

/** `e_t = a·v_t + r·e_{t−1}` with `r = 2^(−1/halfLife)`, `a = 1 − r`, `e` 0 before `start`. */
class EmaPool implements PoolState {
  readonly #r: number;
  readonly #a: number;
  #e = 0;
  /** The last position `#e` accounts for; NaN until the first touch. */
  #t = NaN;
  constructor(halfLife: number) {
    this.#r = Math.pow(2, -1 / halfLife);
    this.#a = 1 - this.#r;
  }
  /** Decay `#e` over the zero tokens after `#t` up to and including `upTo`. */
  #decay(upTo: number, start: number): void {
    if (Number.isNaN(this.#t)) this.#t = start - 1;
    const gap = upTo - this.#t;
    if (gap <= 0 || this.#e === 0) return;
    // short gaps step like a per-token pass would (bit-for-bit); long ones use one power
    if (gap <= 32) { for (let i = 0; i < gap; i++) this.#e = this.#a * 0 + this.#r * this.#e; }
    else this.#e *= Math.pow(this.#r, gap);
  }
  push(t: number, v: number, start: number): void {
    this.#decay(t - 1, start);
    this.#e = this.#a * v + this.#r * this.#e;
    this.#t = t;
  }
  read(t: number, start: number): number {
    this.#decay(t, start);
    if (t > this.#t) this.#t = t;
    return this.#e;
  }
}

/**
 * Max, mean, count and max-of-rolling-means over the last `window` tokens,
 * from a ring buffer of the nonzero entries still in the window (at most
 * `window` of them, grown on demand).
 */
class WindowPool implements PoolState {
  readonly #kind: "max" | "mean" | "count" | "rolling_mean_max";
  readonly #n: number;
  readonly #above: number;
  #pos: Float64Array;
  #val: Float64Array;
  #head = 0;
  #size = 0;
  /** rolling_mean_max: the largest rolling mean so far, and the last position it accounts for. */
  #best = -Infinity;
  #t = NaN;

  constructor(pool: Extract<Pool, { window: number }>) {
    this.#kind = pool.kind;
    this.#n = pool.window;
    this.#above = pool.kind === "count" ? pool.above : 0;
    const cap = Math.min(pool.window, 4);
    this.#pos = new Float64Array(cap);
    this.#val = new Float64Array(cap);
  }

  /** Drop entries that left the window ending at `t`. */
  #evict(t: number): void {
    const first = t - this.#n + 1;
    while (this.#size > 0 && this.#pos[this.#head] < first) {
      this.#head = (this.#head + 1) % this.#pos.length;
      this.#size--;
    }
  }

  #append(t: number, v: number): void {
    if (this.#size === this.#pos.length) {
      // grow (at most to the window size: entries are at distinct positions within it)
      const cap = Math.min(this.#n, this.#pos.length * 2);
      const pos = new Float64Array(cap);
      const val = new Float64Array(cap);
      for (let i = 0; i < this.#size; i++) {
        const j = (this.#head + i) % this.#pos.length;
        pos[i] = this.#pos[j];
        val[i] = this.#val[j];
      }
      this.#pos = pos;
      this.#val = val;
      this.#head = 0;
    }
    const j = (this.#head + this.#size) % this.#pos.length;
    this.#pos[j] = t;
    this.#val[j] = v;
    this.#size++;
  }

  /** Mean over the window ending at `t`, entries summed in position order (as a per-token pass does). */
  #meanAt(t: number, start: number): number {
    const first = t - this.#n + 1;
    let sum = 0;
    for (let i = 0; i < this.#size; i++) {
      const j = (this.#head + i) % this.#pos.length;
      const p = this.#pos[j];
      if (p > t) break;
      if (p >= first) sum += this.#val[j];
    }
    return sum / Math.min(this.#n, t - start + 1);
  }

  /**
   * rolling_mean_max over the zero tokens after `#t` up to `upTo`: with
   * nonnegative entries a zero token never raises the mean (the sum keeps or
   * loses terms, `n` keeps or grows), so only negative entries (probe scores)
   * and a state that has seen no token yet need looking at.
   */
  #rollGap(upTo: number, start: number): void {
    if (Number.isNaN(this.#t)) this.#t = start - 1;
    if (upTo <= this.#t) return;
    if (this.#t < start) {
      // the first tokens accounted for, all zero: their rolling means are 0
      this.#best = Math.max(this.#best, 0);
      this.#t = upTo;
      return;
    }
    let negative = false;
    for (let i = 0; i < this.#size; i++) {
      if (this.#val[(this.#head + i) % this.#pos.length] < 0) negative = true;
    }
    if (negative) {
      // after the newest entry leaves the window the mean is 0; no need to look further
      const newest = this.#pos[(this.#head + this.#size - 1) % this.#pos.length];
      const last = Math.min(upTo, newest + this.#n);
      for (let g = this.#t + 1; g <= last; g++) {
        this.#best = Math.max(this.#best, this.#meanAt(g, start));
      }
      if (last < upTo) this.#best = Math.max(this.#best, 0);
    }
    this.#t = upTo;
  }

  push(t: number, v: number, start: number): void {
    // the gap before t is looked at before entries leave the window
    if (this.#kind === "rolling_mean_max") this.#rollGap(t - 1, start);
    this.#evict(t);
    if (this.#kind === "rolling_mean_max") {
      this.#append(t, v);
      this.#best = Math.max(this.#best, this.#meanAt(t, start));
      this.#t = t;
    } else {
      this.#append(t, v);
    }
  }

  read(t: number, start: number): number {
    if (this.#kind === "rolling_mean_max") {
      this.#rollGap(t, start);
      return this.#best;
    }
    this.#evict(t);
    const n = Math.min(this.#n, t - start + 1);
    switch (this.#kind) {
      case "mean":
        return this.#meanAt(t, start);
      case "max": {
        // tokens of the window without an entry read 0
        let m = this.#size < n ? 0 : -Infinity;
        for (let i = 0; i < this.#size; i++) {
          const v = this.#val[(this.#head + i) % this.#pos.length];
          if (v > m) m = v;
        }
        return m;
      }
      case "count": {
        let c = this.#above < 0 ? n - this.#size : 0;
        for (let i = 0; i < this.#size; i++) {
          if (this.#val[(this.#head + i) % this.#pos.length] > this.#above) c++;
        }
        return c;
      }
    }
  }
}
