/**
 * Publishing one alert (or one spooled record) to the alert stream: the
 * durable publish with its message id and headers, the outcome classified
 * by the error's class and code (`classifyBusError`), and the stream
 * re-created when it has gone missing. Shared by the memory queue and the
 * spool replay of the JetStream sink.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import type { Bus } from "../../bus/bus.ts";
import { type BusErrorKind, classifyBusError } from "../../bus/errors.ts";
import type { JetStreamSinkOptions, Outcome } from "./types.ts";

/**
 * Publish errors that no retry can cure (the alert is dropped, counted and
 * logged, with the kind as the reason), by the error's class and code.
 */
export function permanentReason(kind: BusErrorKind): string | null {
  return kind === "too_large" || kind === "permission_denied" ? kind : null;
}

/** Errors that mean the stream is gone (no JetStream responder on its subject). */
export function streamMissing(kind: BusErrorKind): boolean {
  return kind === "no_responders" || kind === "stream_not_found";
}

/** Publishes to the sink's subject; one stream re-creation at a time. */
export class StreamPublisher {
  #streamCheck: Promise<void> | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly o: Pick<JetStreamSinkOptions, "subject" | "stream" | "rendering" | "log">,
  ) {}

  async publish(id: string, data: Uint8Array, alert: Alert | null): Promise<Outcome> {
    const r = this.o.rendering;
    try {
      const ack = await this.bus.publishDurable(
        this.o.subject,
        data,
        r ? `${id}:${r.id}` : id,
        headersFor(alert, r?.contentType),
      );
      return { kind: "ok", seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      const error = (err as Error)?.message ?? String(err);
      const kind = classifyBusError(err);
      const reason = permanentReason(kind);
      if (reason) return { kind: "permanent", reason, error };
      if (streamMissing(kind) && this.bus.connected) await this.#recreateStream();
      return { kind: "transient", error };
    }
  }

  /** The payload of a spooled record: itself, or its rendering; a string says why there is none. */
  payloadOf(data: Uint8Array, alert: Alert | null): Uint8Array | string {
    const r = this.o.rendering;
    if (!r) return data;
    if (!alert) return "the spooled record is not an alert (JSON)";
    try {
      return r.render(alert);
    } catch (err) {
      return (err as Error)?.message ?? String(err);
    }
  }

  /** One stream re-creation at a time, shared by every failing publish. */
  #recreateStream(): Promise<void> {
    this.#streamCheck ??= this.bus.ensureStream(this.o.stream)
      .then(() => this.o.log?.warn("alert.stream_recreated", { stream: this.o.stream.name }))
      .catch((err) =>
        this.o.log?.error("alert.stream_check_failed", {
          stream: this.o.stream.name,
          error: (err as Error).message,
        })
      )
      .finally(() => this.#streamCheck = null);
    return this.#streamCheck;
  }
}

/** Headers consumers pick a decoder and route by, as the alert publisher always sent them. */
function headersFor(alert: Alert | null, contentType = "application/json"): Record<string, string> {
  const h: Record<string, string> = { "Content-Type": contentType };
  if (!alert) return h;
  if (alert.schema) h["Lw-Schema"] = alert.schema;
  if (alert.severity) h["Lw-Severity"] = alert.severity;
  if (alert.policy?.id) h["Lw-Rule"] = alert.policy.id;
  if (alert.traceparent) h.traceparent = alert.traceparent;
  return h;
}
