/**
 * Where alerts go. Every sink has its own bounded queue, a timeout per
 * delivery and counted drops, so a slow or dead sink slows neither the
 * pipeline nor the other sinks: `submit` never blocks.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";

/** Counters of one sink. */
export interface SinkStats {
  /** Alerts waiting (queued or being delivered). */
  queued: number;
  /** Alerts the destination accepted. */
  delivered: number;
  /** Alerts given up on, by reason (queue_full, too_large, rejected, shutdown, ...). */
  dropped: Record<string, number>;
  /** Delivery attempts that failed and were retried. */
  retries: number;
}

/** One alert destination. */
export interface AlertSink {
  /** Stable name for logs and metrics, e.g. `jetstream`, `syslog:soc`, `webhook:splunk`. */
  readonly name: string;
  /** Connect or check the destination (a JetStream stream, a TCP connection, ...). */
  start(): Promise<void>;
  /** Queue `alert`; returns false when it was dropped (and counted, and logged). Never blocks. */
  submit(alert: Alert): boolean;
  /**
   * Wait up to `timeoutMs` for the queue to empty, then give up on what is
   * left (counted as dropped, reason `shutdown`). Resolves with that number.
   */
  drain(timeoutMs: number): Promise<number>;
  /** Release connections and timers. */
  close(): Promise<void>;
  readonly stats: SinkStats;
}

/**
 * Where an alert handed to {@linkcode DurableSink.persist} stands: `true`
 * when it is durable already (written ahead to disk, or acknowledged by its
 * destination); otherwise a promise that resolves true once it is durable,
 * false when it was dropped (counted and logged).
 */
export type Durability = true | Promise<boolean>;

/**
 * A sink that makes alerts durable before anything else sees them (the
 * JetStream sink with its spool): the pipeline hands an alert to the other
 * sinks, its callbacks and its counters only once `persist` said it is
 * durable.
 */
export interface DurableSink extends AlertSink {
  /**
   * Make `alerts` durable (one write for the list) and queue them for
   * delivery; one {@linkcode Durability} per alert, in order. Never blocks.
   */
  persist(alerts: readonly Alert[]): Durability[];
}
