/**
 * A bounded micro-batcher: items (frames) carrying a token count go in; a
 * batch comes out when it holds `maxBatchTokens` tokens or when the oldest
 * item has waited `maxWaitMs`. The queue never holds more than
 * `maxQueueTokens` tokens: {@linkcode MicroBatcher.offer} refuses the item
 * instead, and the caller counts the drop. Pure apart from timers (and, in
 * adaptive mode, `setImmediate` for waits shorter than a timer can time).
 *
 * @module
 */

/**
 * How late a short timer may fire (ms). In Deno a `setTimeout` of 0–2 ms
 * fires about 2 ms late, more than the whole default `maxWaitMs`; an
 * adaptive batcher whose wait has at most this long left therefore waits one
 * turn of the I/O already due (`setImmediate`: the frames of the same socket
 * read join the batch) and then sends it, instead of setting a timer.
 */
export const TIMER_GRANULARITY_MS = 4;

/** Limits of a {@linkcode MicroBatcher}. */
export interface BatchLimits {
  maxBatchTokens: number;
  maxWaitMs: number;
  maxQueueTokens: number;
  /**
   * Adapt the wait to the load (default false): a partial batch waits only
   * while tokens arrive fast enough to fill it before `maxWaitMs`; at a
   * lower rate it goes out at once, since waiting would only add latency.
   */
  adaptive?: boolean;
}

/** Anything with a token count; zero-token items (end markers) are allowed. */
export interface Batchable {
  readonly tokens: number;
}

/**
 * Collects items into batches across producers.
 *
 * @example
 * ```ts
 * const b = new MicroBatcher<{ tokens: number }>({ maxBatchTokens: 4, maxWaitMs: 2, maxQueueTokens: 64 });
 * b.offer({ tokens: 3 });
 * const batch = await b.next(); // [{ tokens: 3 }] after at most 2 ms
 * ```
 */
export class MicroBatcher<T extends Batchable> {
  readonly limits: BatchLimits;
  /** Items from `#head` on wait; slots before it are emptied as they are taken. */
  #queue: (T | undefined)[] = [];
  #head = 0;
  #queuedTokens = 0;
  #oldestAt = 0;
  #waiter: ((batch: T[] | null) => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Arrival rate estimate (tokens per ms, exponentially weighted) and when the last item came. */
  #rate = 0;
  #lastOfferAt = -1;

  constructor(limits: BatchLimits) {
    if (!(limits.maxBatchTokens >= 1)) {
      throw new RangeError(`maxBatchTokens: expected ≥ 1, found ${limits.maxBatchTokens}`);
    }
    if (!(limits.maxQueueTokens >= limits.maxBatchTokens)) {
      throw new RangeError(
        `maxQueueTokens: expected ≥ maxBatchTokens (${limits.maxBatchTokens}), found ${limits.maxQueueTokens}`,
      );
    }
    if (!(limits.maxWaitMs >= 0)) {
      throw new RangeError(`maxWaitMs: expected ≥ 0, found ${limits.maxWaitMs}`);
    }
    this.limits = limits;
  }

  /** Tokens waiting in the queue. */
  get queuedTokens(): number {
    return this.#queuedTokens;
  }

  /** Items waiting in the queue. */
  get queuedItems(): number {
    return this.#queue.length - this.#head;
  }

  /**
   * Enqueue `item`. Returns false (and keeps nothing) when the queue is
   * closed or the item would push it past `maxQueueTokens`. An `urgent`
   * item (a gated frame, whose model waits for the verdict) does not wait
   * for the batch to fill: the batch it is in goes out at the end of the
   * current turn, with the other frames of the same socket read. `now` is
   * the `performance.now()` of its arrival, when the caller has taken it.
   */
  offer(item: T, urgent = false, now: number = performance.now()): boolean {
    if (this.#closed) return false;
    if (this.#queuedTokens + item.tokens > this.limits.maxQueueTokens) return false;
    if (this.queuedItems === 0) this.#oldestAt = now;
    if (this.limits.adaptive) {
      if (this.#lastOfferAt >= 0) {
        // a burst (same millisecond) counts as arriving over 0.05 ms
        const instant = item.tokens / Math.max(0.05, now - this.#lastOfferAt);
        this.#rate = 0.8 * this.#rate + 0.2 * instant;
      }
      this.#lastOfferAt = now;
    }
    this.#queue.push(item);
    this.#queuedTokens += item.tokens;
    if (urgent) this.#urgentUpTo = this.#queue.length;
    this.#wake();
    return true;
  }

  /** Queue index just past the last urgent item; a batch reaching it goes out at once. */
  #urgentUpTo = 0;

  /**
   * The next batch: resolves as soon as `maxBatchTokens` tokens are queued or
   * the oldest item has waited `maxWaitMs`; null once closed and drained.
   * One consumer at a time.
   */
  next(): Promise<T[] | null> {
    if (this.#waiter) throw new Error("MicroBatcher.next: a consumer is already waiting");
    return new Promise((resolve) => {
      this.#waiter = resolve;
      this.#wake();
    });
  }

  /** Stop accepting items; the consumer still drains what is queued. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    if (!this.#waiter) return;
    const items = this.queuedItems;
    if (items === 0) {
      if (this.#closed) this.#deliver(null);
      return;
    }
    if (this.#queuedTokens >= this.limits.maxBatchTokens || this.#closed) {
      this.#deliver(this.#take());
      return;
    }
    // an urgent batch waits for the end of the turn even when nothing else would be worth
    // waiting for: the rest of the same socket read (other requests' gated steps) joins it
    if (this.#urgentUpTo > this.#head) {
      this.#sendSoon();
      return;
    }
    const waited = performance.now() - this.#oldestAt;
    if (waited >= this.limits.maxWaitMs || this.#notWorthWaiting(waited)) {
      this.#deliver(this.#take());
      return;
    }
    if (this.#timer !== undefined || this.#poll !== undefined) return;
    const left = this.limits.maxWaitMs - waited;
    if (this.limits.adaptive && left <= TIMER_GRANULARITY_MS) {
      // a timer this short fires ~2 ms late in Deno (docs/performance.md): wait one turn of
      // the I/O already due (the frames of the same socket read) instead, then go
      this.#poll = setImmediate(() => {
        this.#poll = undefined;
        if (this.#waiter && this.queuedItems > 0) this.#deliver(this.#take());
      });
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#wake();
    }, Math.max(0, this.limits.adaptive ? left - TIMER_GRANULARITY_MS : left));
  }

  /** Adaptive: the pending send after one turn of due I/O (see {@linkcode TIMER_GRANULARITY_MS}). */
  #poll: ReturnType<typeof setImmediate> | undefined;

  /**
   * An urgent item's batch goes out once the current turn is over: the
   * messages of one socket read are handed over in one turn, so gated frames
   * that arrive together (8 decode steps, one per request) go out in one
   * batch, not the first alone and the rest after its encode.
   */
  #sendSoon(): void {
    if (this.#sending) return;
    this.#sending = true;
    queueMicrotask(() => {
      this.#sending = false;
      if (!this.#waiter) return;
      if (this.queuedItems > 0) this.#deliver(this.#take());
      else if (this.#closed) this.#deliver(null);
    });
  }

  #sending = false;

  /** Adaptive: would the batch still be partial when `maxWaitMs` runs out? Then send it now. */
  #notWorthWaiting(waited: number): boolean {
    if (!this.limits.adaptive) return false;
    const missing = this.limits.maxBatchTokens - this.#queuedTokens;
    const left = this.limits.maxWaitMs - waited;
    // the rate estimate decays with the silence since the last arrival
    const silence = performance.now() - this.#lastOfferAt;
    const rate = this.#rate * Math.min(1, 1 / Math.max(1, silence));
    return rate * left < missing;
  }

  /** Current arrival-rate estimate in tokens per second (adaptive mode; 0 otherwise). */
  get arrivalRate(): number {
    return this.#rate * 1000;
  }

  #deliver(batch: T[] | null): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#poll !== undefined) {
      clearImmediate(this.#poll);
      this.#poll = undefined;
    }
    const w = this.#waiter!;
    this.#waiter = null;
    w(batch);
  }

  /** Take items up to maxBatchTokens (always at least one item). */
  #take(): T[] {
    const batch: T[] = [];
    let tokens = 0;
    while (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head]!;
      if (batch.length > 0 && tokens + item.tokens > this.limits.maxBatchTokens) break;
      batch.push(item);
      tokens += item.tokens;
      // a taken slot must not keep its item: until the queue is compacted, a frame (its
      // headers, its decoded values) would outlive the young generation and fill the old one
      this.#queue[this.#head++] = undefined;
    }
    this.#queuedTokens -= tokens;
    if (this.#head === this.#queue.length) {
      // drained (the common case below saturation): start over from an empty array
      this.#queue.length = 0;
      this.#urgentUpTo = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#urgentUpTo = Math.max(0, this.#urgentUpTo - this.#head);
      this.#head = 0;
    }
    if (this.queuedItems > 0) this.#oldestAt = performance.now();
    return batch;
  }
}
