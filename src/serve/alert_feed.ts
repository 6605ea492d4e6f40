/**
 * A small bounded fan-out of live alerts to in-process subscribers (the SSE
 * endpoint of the control API), and the alert filter shared with
 * `latentwatch alerts tail`.
 *
 * The feed is a tap on the pipeline, not a delivery guarantee: the durable
 * path is the JetStream stream. So `publish` never waits for a subscriber;
 * each subscriber has its own bounded queue, and one that falls behind loses
 * its oldest alerts and is told how many it missed (like a lagged broadcast
 * receiver) instead of slowing the pipeline or the other subscribers.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { SEVERITIES, type Severity } from "../core/policy/ast.ts";

/** Which alerts a subscriber (or `alerts tail`) wants. Empty lists and absent fields match all. */
export interface AlertFilter {
  /** Exact severities, e.g. `["high", "critical"]`. */
  severities?: Severity[];
  /** Lowest severity accepted (`medium` accepts medium, high, critical). */
  minSeverity?: Severity;
  /** Policy (rule) ids. */
  policies?: string[];
  /** Model names. */
  models?: string[];
}

/** A filter string could not be read (unknown severity, both severity forms given, ...). */
export class AlertFilterError extends Error {
  override name = "AlertFilterError";
}

/** `subscribe` was refused because the feed already has `maxSubscribers` subscribers. */
export class AlertFeedFullError extends Error {
  override name = "AlertFeedFullError";
}

/**
 * `subscribe` was refused because this client (remote address) already has
 * `maxPerClient` subscriptions; answered 429 by the control API.
 */
export class AlertFeedClientLimitError extends Error {
  override name = "AlertFeedClientLimitError";
  constructor(readonly client: string, readonly limit: number, options?: ErrorOptions) {
    super(
      `alert feed: client ${client}: expected at most ${limit} live streams per client address, found ${limit} open already; close one or raise control.max_streams_per_client`,
      options,
    );
  }
}

/**
 * Split a comma-separated list (`"high, critical"`), dropping empty items.
 *
 * @example
 * ```ts
 * splitList("high, critical,"); // ["high", "critical"]
 * ```
 */
export function splitList(value: string | undefined | null): string[] {
  if (!value) return [];
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

function parseSeverity(value: string, what: string): Severity {
  const s = value.toLowerCase();
  if (!(SEVERITIES as readonly string[]).includes(s)) {
    throw new AlertFilterError(
      `${what}: unknown severity '${value}' (expected one of ${SEVERITIES.join(", ")})`,
    );
  }
  return s as Severity;
}

/**
 * Build an {@linkcode AlertFilter} from the comma-separated strings a person
 * types (CLI flags, SSE query parameters). Throws {@linkcode AlertFilterError}
 * on an unknown severity or when both severity forms are given.
 *
 * @example
 * ```ts
 * parseAlertFilter({ severity: "high,critical", policy: "prompt-injection" });
 * // { severities: ["high", "critical"], policies: ["prompt-injection"] }
 * ```
 */
export function parseAlertFilter(raw: {
  severity?: string | null;
  minSeverity?: string | null;
  policy?: string | null;
  model?: string | null;
}): AlertFilter {
  const filter: AlertFilter = {};
  const severities = splitList(raw.severity).map((s) => parseSeverity(s, "severity"));
  if (severities.length > 0 && raw.minSeverity) {
    // two ways of saying the same thing: refuse rather than pick one silently
    throw new AlertFilterError("give either severity or min-severity, not both");
  }
  if (severities.length > 0) filter.severities = severities;
  if (raw.minSeverity) filter.minSeverity = parseSeverity(raw.minSeverity.trim(), "min-severity");
  const policies = splitList(raw.policy);
  if (policies.length > 0) filter.policies = policies;
  const models = splitList(raw.model);
  if (models.length > 0) filter.models = models;
  return filter;
}

/**
 * True when `alert` passes `filter`.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * matchesAlert(alert, { minSeverity: "high" }); // true for high and critical alerts
 * ```
 */
export function matchesAlert(alert: Alert, filter: AlertFilter): boolean {
  if (filter.severities?.length && !filter.severities.includes(alert.severity)) return false;
  if (
    filter.minSeverity &&
    SEVERITIES.indexOf(alert.severity) < SEVERITIES.indexOf(filter.minSeverity)
  ) return false;
  if (filter.policies?.length && !filter.policies.includes(alert.policy?.id)) return false;
  if (filter.models?.length && !filter.models.includes(alert.model)) return false;
  return true;
}

/** What a subscriber's callback learns besides the alert. */
export interface AlertDelivery {
  /** Alerts this subscriber lost to a full queue since the previous delivery. */
  missed: number;
}

/**
 * Receives one alert at a time. A returned promise is awaited before the next
 * alert is handed over (so an SSE write applies back-pressure to this
 * subscriber's queue only). A throw or rejection ends the subscription.
 */
export type AlertCallback = (alert: Alert, delivery: AlertDelivery) => void | Promise<void>;

/** Options of {@linkcode AlertFeed}. */
export interface AlertFeedOptions {
  /** Alerts queued per subscriber before the oldest are dropped (default 256). */
  maxQueue?: number;
  /** Subscribers at most; more are refused with {@linkcode AlertFeedFullError} (default 64). */
  maxSubscribers?: number;
  /**
   * Subscribers at most per client (the `client` given to `subscribe`, the
   * remote address for SSE); more are refused with
   * {@linkcode AlertFeedClientLimitError} (default 4).
   */
  maxPerClient?: number;
}

/** Options of {@linkcode AlertFeed.subscribe}. */
export interface SubscribeOptions {
  /** Who subscribes (the remote address), for the per-client limit; unlimited per client when absent. */
  client?: string;
}

/** Counters of an {@linkcode AlertFeed}. */
export interface AlertFeedStats {
  /** Subscribers now. */
  subscribers: number;
  /** Alerts published into the feed. */
  published: number;
  /** Alerts handed to subscriber callbacks (one alert to three subscribers counts three). */
  delivered: number;
  /** Alerts dropped from full subscriber queues (lag), summed over subscribers. */
  lagged: number;
  /** Subscriptions ended because their callback threw. */
  failed: number;
}

interface Subscriber {
  filter: AlertFilter;
  onAlert: AlertCallback;
  queue: Alert[];
  missed: number;
  pumping: boolean;
  closed: boolean;
  client?: string;
}

/**
 * Bounded fan-out of live alerts.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * const feed = new AlertFeed({ maxQueue: 100 });
 * const unsubscribe = feed.subscribe({ minSeverity: "high" }, (alert, { missed }) => {
 *   console.log(alert.id, missed);
 * });
 * feed.publish(alert); // never blocks
 * unsubscribe();
 * ```
 */
export class AlertFeed {
  readonly #maxQueue: number;
  readonly #maxSubscribers: number;
  readonly #maxPerClient: number;
  readonly #subs = new Set<Subscriber>();
  /** Subscribers per client. */
  readonly #perClient = new Map<string, number>();
  #published = 0;
  #delivered = 0;
  #lagged = 0;
  #failed = 0;
  readonly #closed = Promise.withResolvers<void>();

  /** Resolves when the feed is closed: live streams should end then (shutdown). */
  get closed(): Promise<void> {
    return this.#closed.promise;
  }

  /** End the feed: subscribers are dropped and `closed` resolves, so SSE streams finish. */
  close(): void {
    this.#subs.clear();
    this.#perClient.clear();
    this.#closed.resolve();
  }

  constructor(opts: AlertFeedOptions = {}) {
    this.#maxQueue = Math.max(1, opts.maxQueue ?? 256);
    this.#maxSubscribers = Math.max(1, opts.maxSubscribers ?? 64);
    this.#maxPerClient = Math.max(1, opts.maxPerClient ?? 4);
  }

  /** Hand `alert` to every matching subscriber's queue. Synchronous; never waits. */
  publish(alert: Alert): void {
    this.#published++;
    for (const sub of this.#subs) {
      if (!matchesAlert(alert, sub.filter)) continue;
      if (sub.queue.length >= this.#maxQueue) {
        // drop the oldest: a live view is worth more for what is happening now
        sub.queue.shift();
        sub.missed++;
        this.#lagged++;
      }
      sub.queue.push(alert);
      if (!sub.pumping) {
        sub.pumping = true;
        // deliver after publish returns, so no callback runs on the pipeline's turn
        queueMicrotask(() => this.#pump(sub));
      }
    }
  }

  /**
   * Receive the alerts that match `filter` from now on. Returns the function
   * that ends the subscription (idempotent). Throws
   * {@linkcode AlertFeedClientLimitError} when `opts.client` already has
   * `maxPerClient` subscriptions, {@linkcode AlertFeedFullError} when
   * `maxSubscribers` are already here.
   *
   * @example
   * ```ts
   * import type { Alert } from "../core/alert.ts";
   * declare const alert: Alert;
   * const feed = new AlertFeed({ maxPerClient: 4 });
   * const stop = feed.subscribe(
   *   { minSeverity: "high" },
   *   (alert) => console.log(alert.id, alert.severity),
   *   { client: "127.0.0.1" }, // counted against that address's maxPerClient
   * );
   * feed.publish(alert); // delivered after publish returns
   * stop();
   * ```
   */
  subscribe(filter: AlertFilter, onAlert: AlertCallback, opts: SubscribeOptions = {}): () => void {
    const client = opts.client;
    if (client !== undefined && (this.#perClient.get(client) ?? 0) >= this.#maxPerClient) {
      throw new AlertFeedClientLimitError(client, this.#maxPerClient);
    }
    if (this.#subs.size >= this.#maxSubscribers) {
      throw new AlertFeedFullError(
        `alert feed full: ${this.#maxSubscribers} subscribers already`,
      );
    }
    const sub: Subscriber = {
      filter,
      onAlert,
      queue: [],
      missed: 0,
      pumping: false,
      closed: false,
      ...(client !== undefined ? { client } : {}),
    };
    this.#subs.add(sub);
    if (client !== undefined) this.#perClient.set(client, (this.#perClient.get(client) ?? 0) + 1);
    return () => this.#remove(sub);
  }

  /** A snapshot of the counters. */
  get stats(): AlertFeedStats {
    return {
      subscribers: this.#subs.size,
      published: this.#published,
      delivered: this.#delivered,
      lagged: this.#lagged,
      failed: this.#failed,
    };
  }

  #remove(sub: Subscriber): void {
    sub.closed = true;
    sub.queue.length = 0;
    if (!this.#subs.delete(sub)) return;
    if (sub.client !== undefined) {
      const n = (this.#perClient.get(sub.client) ?? 1) - 1;
      if (n > 0) this.#perClient.set(sub.client, n);
      else this.#perClient.delete(sub.client);
    }
  }

  async #pump(sub: Subscriber): Promise<void> {
    try {
      while (!sub.closed && sub.queue.length > 0) {
        const alert = sub.queue.shift()!;
        const missed = sub.missed;
        sub.missed = 0;
        this.#delivered++;
        await sub.onAlert(alert, { missed });
      }
    } catch {
      this.#failed++;
      this.#remove(sub);
    } finally {
      sub.pumping = false;
    }
  }
}
