/**
 * The delivery engine every sink shares: a bounded queue, batches handed to
 * a `deliver` function with a per-attempt timeout (an `AbortSignal`),
 * retries with capped exponential backoff, and drops counted by reason.
 * `submit` never waits: an alert that does not fit is dropped and counted at
 * once, so a slow or dead destination costs the caller nothing but a
 * counter.
 *
 * A `deliver` function signals a failure no retry can cure by throwing
 * {@linkcode PermanentDeliveryError} (its `reason` is the drop reason, e.g.
 * `rejected`); any other error, and a timeout, is retried until
 * `maxAttempts`, then dropped as `retries_exhausted`.
 *
 * @module
 */
import type { SinkStats } from "./sink.ts";
import { Backoff } from "../shared/backoff.ts";

/**
 * Count `n` drops for `reason` in `stats.dropped` (the one place sinks count
 * drops; each sink then logs and reports them its way).
 *
 * @example
 * ```ts
 * const stats = { queued: 0, delivered: 0, dropped: {}, retries: 0 };
 * countDrop(stats, "queue_full"); // stats.dropped: { queue_full: 1 }
 * ```
 */
export function countDrop(stats: Pick<SinkStats, "dropped">, reason: string, n = 1): void {
  stats.dropped[reason] = (stats.dropped[reason] ?? 0) + n;
}

/** A failure no retry can cure (a 4xx answer, an oversized message): dropped with `reason`. */
export class PermanentDeliveryError extends Error {
  /** Drop reason counted in {@linkcode SinkStats.dropped}, e.g. `rejected`, `too_large`. */
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "PermanentDeliveryError";
    this.reason = reason;
  }
}

/** A delivery attempt ran past its timeout (the attempt's signal was aborted). */
export class DeliveryTimeoutError extends Error {
  constructor(timeoutMs: number, foundMs: number) {
    super(`expected delivery within ${timeoutMs} ms, found none after ${foundMs} ms`);
    this.name = "DeliveryTimeoutError";
  }
}

/** Settings of a {@linkcode DeliveryQueue}. */
export interface DeliveryQueueOptions {
  /** Items queued or being delivered at most; more are dropped (`queue_full`). */
  maxQueue: number;
  /** Per-attempt limit in ms: the attempt's signal is aborted and the attempt counts as failed. */
  timeoutMs: number;
  /** Attempts per batch before it is dropped (`retries_exhausted`); `Infinity` retries forever. */
  maxAttempts?: number;
  /** First retry delay in ms (default 100), doubled per attempt up to `maxBackoffMs` (default 5000). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Items handed to one `deliver` call at most (default 1). */
  maxBatch?: number;
  /** `deliver` calls running at once (default 1: order kept, as a stream needs). */
  concurrency?: number;
  /** Called for every dropped item (after it is counted), to log or record a metric. */
  onDrop?: (item: unknown, reason: string, error?: string) => void;
  /** Called for every failed attempt that will be retried. */
  onRetry?: (attempt: number, delayMs: number, error: string) => void;
}

/**
 * Delivers a batch. `attempt` counts from 1. Resolve when the destination has
 * it; throw to retry (or {@linkcode PermanentDeliveryError} to drop). A
 * delivery that may return a server-chosen delay (HTTP `Retry-After`) throws
 * an error with a numeric `retryAfterMs` property.
 */
export type DeliverFn<T> = (batch: T[], signal: AbortSignal, attempt: number) => Promise<void>;

/**
 * Bounded, retrying, never-blocking delivery queue.
 *
 * @example
 * ```ts
 * const q = new DeliveryQueue<string>(async (batch, signal) => {
 *   await fetch("http://127.0.0.1:8080/", { method: "POST", body: batch[0], signal });
 * }, { maxQueue: 1000, timeoutMs: 5000, maxAttempts: 5 });
 * q.submit("hello"); // true: queued
 * await q.drain(2000); // 0: nothing abandoned
 * ```
 */
export class DeliveryQueue<T> {
  readonly #deliver: DeliverFn<T>;
  readonly #o: Required<Omit<DeliveryQueueOptions, "onDrop" | "onRetry">> & DeliveryQueueOptions;
  #queue: T[] = [];
  /** Batches being delivered or waiting for a retry, with the controller of their attempt. */
  #active = new Map<T[], AbortController>();
  #activeItems = 0;
  #idle: (() => void)[] = [];
  #closed = false;
  #abandoned = false;
  /** Backoff sleeps in progress: abandon() ends them at once. */
  #sleeps = new Map<ReturnType<typeof setTimeout>, () => void>();
  readonly #stats: SinkStats = { queued: 0, delivered: 0, dropped: {}, retries: 0 };

  constructor(deliver: DeliverFn<T>, opts: DeliveryQueueOptions) {
    if (!(opts.maxQueue >= 1)) {
      throw new RangeError(`expected maxQueue ≥ 1, found ${opts.maxQueue}`);
    }
    if (!(opts.timeoutMs > 0)) {
      throw new RangeError(`expected timeoutMs > 0, found ${opts.timeoutMs}`);
    }
    this.#deliver = deliver;
    this.#o = {
      maxAttempts: Infinity,
      initialBackoffMs: 100,
      maxBackoffMs: 5000,
      maxBatch: 1,
      concurrency: 1,
      ...opts,
    };
  }

  /** Live counters (`queued` is recomputed on each read). */
  get stats(): SinkStats {
    this.#stats.queued = this.pending;
    return this.#stats;
  }

  /** Items queued or being delivered. */
  get pending(): number {
    return this.#queue.length + this.#activeItems;
  }

  /** Queue `item`; false when it was dropped (`queue_full`, or `shutdown` once closed). */
  submit(item: T): boolean {
    if (this.#closed) return this.#drop([item], "shutdown"), false;
    if (this.pending >= this.#o.maxQueue) return this.#drop([item], "queue_full"), false;
    this.#queue.push(item);
    this.#pump();
    return true;
  }

  /** Count `reason` drops of `items` and report them. Public so a sink can drop before queueing. */
  drop(items: T[], reason: string, error?: string): void {
    this.#drop(items, reason, error);
  }

  /**
   * Wait up to `timeoutMs` for everything queued to be delivered, then give up
   * on what is left (counted as `shutdown`) and stop accepting. Resolves with
   * how many were given up on.
   */
  async drain(timeoutMs: number): Promise<number> {
    if (this.pending > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#idle.push(r)),
        new Promise<void>((r) => timer = setTimeout(r, Math.max(0, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    return this.abandon();
  }

  /** Stop accepting; drop (as `shutdown`) everything not yet delivered; abort attempts. */
  abandon(): number {
    this.#closed = true;
    this.#abandoned = true;
    for (const [t, wake] of this.#sleeps) {
      clearTimeout(t);
      wake();
    }
    this.#sleeps.clear();
    const left = this.#queue.splice(0);
    for (const [batch, ctl] of this.#active) {
      left.push(...batch);
      ctl.abort(new Error("sink shut down"));
    }
    this.#active.clear();
    this.#activeItems = 0;
    this.#drop(left, "shutdown");
    this.#wakeIdle();
    return left.length;
  }

  #drop(items: T[], reason: string, error?: string): void {
    if (items.length === 0) return;
    countDrop(this.#stats, reason, items.length);
    for (const item of items) this.#o.onDrop?.(item, reason, error);
  }

  #wakeIdle(): void {
    if (this.pending === 0) { for (const r of this.#idle.splice(0)) r(); }
  }

  #pump(): void {
    while (
      !this.#abandoned && this.#active.size < this.#o.concurrency && this.#queue.length > 0
    ) {
      const batch = this.#queue.splice(0, this.#o.maxBatch);
      const ctl = new AbortController();
      this.#active.set(batch, ctl);
      this.#activeItems += batch.length;
      this.#run(batch).finally(() => {
        // abandon() already counted and cleared this batch
        if (this.#active.delete(batch)) this.#activeItems -= batch.length;
        this.#wakeIdle();
        this.#pump();
      });
    }
  }

  async #run(batch: T[]): Promise<void> {
    const backoff = new Backoff(this.#o.initialBackoffMs, this.#o.maxBackoffMs);
    for (let attempt = 1;; attempt++) {
      if (this.#abandoned) return;
      const ctl = new AbortController();
      this.#active.set(batch, ctl);
      const started = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        // rejected only by the timer; the race below is the sole listener
        timer = setTimeout(() => {
          const err = new DeliveryTimeoutError(this.#o.timeoutMs, Date.now() - started);
          ctl.abort(err);
          reject(err);
        }, this.#o.timeoutMs);
      });
      try {
        const delivery = Promise.resolve().then(() => this.#deliver(batch, ctl.signal, attempt));
        // a late failure of an attempt that already timed out is not an unhandled rejection
        delivery.catch(() => {});
        // the race makes the timeout hold even for a deliver that ignores its signal
        await Promise.race([delivery, timedOut]);
        if (this.#abandoned) return; // counted as shutdown already
        this.#stats.delivered += batch.length;
        return;
      } catch (err) {
        if (this.#abandoned) return;
        const message = (err as Error)?.message ?? String(err);
        if (err instanceof PermanentDeliveryError) return this.#drop(batch, err.reason, message);
        if (attempt >= this.#o.maxAttempts) {
          return this.#drop(batch, "retries_exhausted", message);
        }
        const hinted = (err as { retryAfterMs?: unknown })?.retryAfterMs;
        const delay = typeof hinted === "number" && hinted >= 0
          ? Math.min(hinted, this.#o.maxBackoffMs)
          : backoff.delay;
        this.#stats.retries++;
        this.#o.onRetry?.(attempt, delay, message);
        await this.#sleep(delay);
        backoff.grow();
      } finally {
        clearTimeout(timer);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#abandoned) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#sleeps.delete(t);
        resolve();
      }, ms);
      this.#sleeps.set(t, resolve);
    });
  }
}
