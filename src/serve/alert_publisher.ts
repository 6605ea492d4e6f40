/**
 * Publishes alerts to the JetStream alert stream, at least once: each alert
 * is retried with backoff until the stream acknowledges it, and its stable id
 * travels as `Nats-Msg-Id` so a retry never stores it twice. The queue is
 * bounded; an alert that does not fit is dropped, counted and logged as an
 * error (never silently), as is one that no retry can deliver (too large for
 * the server, no permission). When the stream itself has gone (a broker
 * restarted without its store) it is created again. A disk spool for long
 * outages comes later.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Bus } from "../bus/bus.ts";
import type { Logger } from "./log.ts";
import type { Telemetry } from "./telemetry.ts";

/** Settings of an {@linkcode AlertPublisher}. */
export interface AlertPublisherOptions {
  subject: string;
  maxQueue: number;
  /** Publishes awaiting their ack at once (default 32). */
  maxInFlight?: number;
  /** First retry delay in ms (default 100), doubled up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called for every alert the stream acknowledged (for live display). */
  onPublished?: (alert: Alert, seq: number, duplicate: boolean) => void;
  /**
   * Re-create the alert stream. Called when a publish finds no stream (the
   * broker restarted without its store, or someone deleted the stream).
   */
  ensureStream?: () => Promise<void>;
}

/** Publish errors that no retry can cure: the alert is dropped, counted and logged. */
function permanentReason(err: unknown): string | null {
  const m = String((err as Error)?.message ?? err);
  if (/max_payload|payload.*exceed|maximum payload/i.test(m)) return "too_large";
  if (/permission/i.test(m)) return "permission_denied";
  return null;
}

/** Errors that mean the stream is gone (no JetStream responder on its subject). */
function streamMissing(err: unknown): boolean {
  const e = err as { message?: string; code?: string | number; cause?: unknown };
  const m = `${e?.message ?? ""} ${String((e?.cause as Error)?.message ?? "")}`;
  return /no responders|stream not found|503/i.test(m);
}

/**
 * Bounded, retrying alert publisher.
 *
 * @example
 * ```ts
 * const pub = new AlertPublisher(bus, telemetry, log, { subject: "latentwatch.alerts.demo", maxQueue: 1000 });
 * pub.submit(alert);
 * await pub.drain();
 * ```
 */
export class AlertPublisher {
  readonly #bus: Bus;
  readonly #t: Telemetry;
  readonly #log: Logger;
  readonly #opts:
    & Required<Omit<AlertPublisherOptions, "onPublished" | "ensureStream">>
    & AlertPublisherOptions;
  #queue: Alert[] = [];
  #inFlight = 0;
  #idle: (() => void)[] = [];
  #closed = false;
  #abandoned = false;
  /** Alerts being sent (awaiting an ack or a retry). */
  #sending = new Set<Alert>();
  #encoder = new TextEncoder();
  #streamCheck: Promise<void> | null = null;

  constructor(bus: Bus, telemetry: Telemetry, log: Logger, opts: AlertPublisherOptions) {
    this.#bus = bus;
    this.#t = telemetry;
    this.#log = log;
    this.#opts = { maxInFlight: 32, initialBackoffMs: 100, maxBackoffMs: 5000, ...opts };
  }

  /** Alerts queued or in flight. */
  get pending(): number {
    return this.#queue.length + this.#inFlight;
  }

  /** Queue `alert`; returns false when it was dropped (queue full or closed). */
  submit(alert: Alert): boolean {
    if (this.#closed || this.pending >= this.#opts.maxQueue) {
      this.#dropped(alert, this.#closed ? "shutdown" : "queue_full");
      return false;
    }
    this.#queue.push(alert);
    this.#t.set("latentwatch.alert_queue.depth", this.pending);
    this.#pump();
    return true;
  }

  /** Resolve once nothing is queued or in flight. */
  drain(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stop accepting alerts; those queued are still delivered. */
  close(): void {
    this.#closed = true;
  }

  /**
   * Give up on every alert not yet acknowledged (shutdown after the drain
   * deadline): each is counted as dropped with reason `shutdown` and its id
   * logged, and the retry loops stop. Returns how many were abandoned.
   */
  abandon(): number {
    this.#closed = true;
    this.#abandoned = true;
    const abandoned = [...this.#queue.splice(0), ...this.#sending];
    this.#sending.clear();
    for (const a of abandoned) this.#dropped(a, "shutdown");
    const count = abandoned.length;
    // in-flight sends see #abandoned at their next retry and stop quietly (already counted)
    this.#t.set("latentwatch.alert_queue.depth", this.pending);
    return count;
  }

  #dropped(alert: Alert, reason: string, error?: string): void {
    this.#t.add("latentwatch.alerts.dropped", 1, { reason });
    this.#log.error("alert.dropped", {
      reason,
      alert: alert.id,
      rule: alert.policy.id,
      request: alert.requestId,
      error,
    });
  }

  #pump(): void {
    while (this.#inFlight < this.#opts.maxInFlight && this.#queue.length > 0) {
      const alert = this.#queue.shift()!;
      this.#inFlight++;
      this.#sending.add(alert);
      this.#send(alert).finally(() => {
        this.#sending.delete(alert);
        this.#inFlight--;
        this.#t.set("latentwatch.alert_queue.depth", this.pending);
        if (this.pending === 0) { for (const r of this.#idle.splice(0)) r(); }
        this.#pump();
      });
    }
  }

  async #send(alert: Alert): Promise<void> {
    const data = this.#encoder.encode(JSON.stringify(alert));
    const headers = {
      "Content-Type": "application/json",
      "Lw-Schema": alert.schema,
      "Lw-Severity": alert.severity,
      "Lw-Rule": alert.policy.id,
      ...(alert.traceparent ? { traceparent: alert.traceparent } : {}),
    };
    let backoff = this.#opts.initialBackoffMs;
    for (let attempt = 1;; attempt++) {
      if (this.#abandoned) return; // counted as dropped by abandon()
      try {
        const ack = await this.#bus.publishDurable(this.#opts.subject, data, alert.id, headers);
        this.#t.add(
          ack.duplicate ? "latentwatch.alerts.duplicate" : "latentwatch.alerts.published",
        );
        if (ack.duplicate) {
          // a retry after a lost ack, or the same request id reused within the dedup window
          this.#log.info("alert.duplicate", {
            alert: alert.id,
            seq: ack.seq,
            request: alert.requestId,
          });
        }
        this.#opts.onPublished?.(alert, ack.seq, ack.duplicate);
        return;
      } catch (err) {
        const message = (err as Error).message;
        const permanent = permanentReason(err);
        if (permanent) return this.#dropped(alert, permanent, message);
        this.#t.add("latentwatch.alerts.publish_retries");
        this.#log.warn("alert.publish_failed", {
          alert: alert.id,
          subject: this.#opts.subject,
          attempt,
          retry_in_ms: backoff,
          error: message,
        });
        if (streamMissing(err) && this.#opts.ensureStream && this.#bus.connected) {
          await this.#recreateStream();
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, this.#opts.maxBackoffMs);
      }
    }
  }

  /** One stream re-creation at a time, shared by every failing publish. */
  #recreateStream(): Promise<void> {
    this.#streamCheck ??= this.#opts.ensureStream!()
      .then(() => this.#log.warn("alert.stream_recreated", { subject: this.#opts.subject }))
      .catch((err) =>
        this.#log.error("alert.stream_check_failed", { error: (err as Error).message })
      )
      .finally(() => this.#streamCheck = null);
    return this.#streamCheck;
  }
}
