/**
 * Settings, counters and the shared shapes of the JetStream sink
 * (`./sink.ts`), its publisher (`./publisher.ts`), its memory queue
 * (`./memory_queue.ts`) and its spool replay (`./replay.ts`).
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import type { StreamSpec } from "../../bus/bus.ts";
import type { Logger } from "../../shared/log.ts";
import type { Telemetry } from "../../shared/telemetry.ts";
import type { SinkStats } from "../sink.ts";
import type { SpoolOptions } from "../spool.ts";

/** Settings of a {@linkcode JetStreamSink}. */
export interface JetStreamSinkOptions {
  /** Subject alerts are published on (captured by `stream`). */
  subject: string;
  /** The alert stream: created or checked at start, re-created when it goes missing. */
  stream: StreamSpec;
  /** Alerts queued in memory or awaiting their ack at most (default 1000). */
  maxQueue?: number;
  /** Publishes awaiting their ack at once (default 32). */
  maxInFlight?: number;
  /** First retry delay in ms (default 100), doubled up to `maxBackoffMs` (default 5000). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * Directory of the on-disk spool. Without one, failed publishes are retried
   * from memory only, and what is left at shutdown is lost (counted).
   */
  spoolDir?: string;
  /** Bounds of the spool. */
  spool?: SpoolOptions;
  /** How often the replay loop looks at the connection while it waits, in ms (default 100). */
  pollMs?: number;
  /** Sink name for logs (default `jetstream`). */
  name?: string;
  log?: Logger;
  /**
   * Mirror counters into the sidecar's telemetry, each series labelled
   * `sink` with {@linkcode JetStreamSink.name} (so several sinks share one
   * telemetry): `latentwatch.alerts.published`, `.duplicate`,
   * `.dropped{reason}`, `.publish_retries` and the gauge
   * `latentwatch.alert_queue.depth`.
   */
  telemetry?: Telemetry;
  /** Called for every alert the stream acknowledged (for live display). */
  onPublished?: (alert: Alert, seq: number, duplicate: boolean) => void;
  /** Publish this rendering of each alert instead of the native record. */
  rendering?: StreamRendering;
}

/** A rendering a {@linkcode JetStreamSink} publishes instead of the native alert. */
export interface StreamRendering {
  /** Short name, the suffix of each message id (`ecs`, `syslog`, `splunk-hec`). */
  id: string;
  /** `Content-Type` header of each message. */
  contentType: string;
  /** The payload of one alert; may throw (the alert is then dropped as `render_failed`). */
  render(alert: Alert): Uint8Array;
}

/** Counters of a {@linkcode JetStreamSink}. */
export interface JetStreamSinkStats extends SinkStats {
  /** Publishes the stream acknowledged as already stored (dedup by `Nats-Msg-Id`). */
  duplicate: number;
  /** Alerts written to the spool. */
  spooled: number;
  /** Spooled alerts delivered from the spool (in this run). */
  spoolReplayed: number;
  /** Alerts waiting in the spool now. */
  spoolPending: number;
  /** Spool records found torn (cut short by a crash) or corrupt when the spool was opened. */
  spoolTorn: number;
  spoolCorrupt: number;
  /**
   * Replay rounds that failed on the spool itself (a read error, a segment
   * gone): logged as errors and retried with backoff; also counted in
   * `retries`.
   */
  spoolErrors: number;
  /**
   * Alerts written to the spool whose `fdatasync` failed: accepted and
   * delivered like the others (they survive a process crash), but a host
   * crash may lose them. Logged as `alert.spool_sync_failed`.
   */
  spoolUnsynced: number;
}

/**
 * The counters of a new {@linkcode JetStreamSink}: all zero.
 *
 * @example
 * ```ts
 * const stats = newSinkStats();
 * stats.delivered; // 0
 * ```
 */
export function newSinkStats(): JetStreamSinkStats {
  return {
    queued: 0,
    delivered: 0,
    dropped: {},
    retries: 0,
    duplicate: 0,
    spooled: 0,
    spoolReplayed: 0,
    spoolPending: 0,
    spoolTorn: 0,
    spoolCorrupt: 0,
    spoolUnsynced: 0,
    spoolErrors: 0,
  };
}

/** The sink's settings are inconsistent. */
export class JetStreamSinkError extends RangeError {
  constructor(field: string, expected: string, found: string) {
    super(`jetstream sink ${field}: expected ${expected}, found ${found}`);
    this.name = "JetStreamSinkError";
  }
}

/** An alert in memory, encoded once. */
export interface Item {
  alert: Alert;
  /** The native record (what the spool keeps). */
  data: Uint8Array;
  /** What is published: the native record, or its rendering. */
  payload: Uint8Array<ArrayBufferLike>;
  /** Time of the first publish attempt, 0 before it. */
  firstAttemptMs: number;
  /** Its record is in the spool (written ahead): memory only speeds its publish up. */
  backed: boolean;
  /** For an alert not written ahead: told once the stream has it (true) or it is dropped (false). */
  settle?: (durable: boolean) => void;
}

export type Outcome =
  | { kind: "ok"; seq: number; duplicate: boolean }
  | { kind: "permanent"; reason: string; error: string }
  | { kind: "transient"; error: string };
