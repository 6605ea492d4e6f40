/**
 * What the JetStream sink counts, reports and logs when an alert is
 * delivered, retried, dropped or spooled without `fdatasync`: its counters
 * (`stats`), the telemetry series labelled with the sink's name, and the
 * log lines (`alert.dropped`, `alert.publish_failed`,
 * `alert.spool_sync_failed`). Shared by the sink (`./sink.ts`), its memory
 * queue (`./memory_queue.ts`) and the spool replay (`./replay.ts`).
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import { countDrop } from "../queue.ts";
import type { SpoolAppendResult } from "../spool.ts";
import type { JetStreamSinkOptions, JetStreamSinkStats } from "./types.ts";

/** The sink's counting and reporting. */
export class JetStreamAccounting {
  constructor(
    readonly name: string,
    readonly stats: JetStreamSinkStats,
    private readonly o: Pick<JetStreamSinkOptions, "subject" | "log" | "telemetry" | "onPublished">,
  ) {}

  /** Count and log alerts written to the spool whose `fdatasync` failed (accepted all the same). */
  unsynced(ids: string[], r: SpoolAppendResult | undefined): void {
    this.stats.spoolUnsynced += ids.length;
    this.o.log?.error("alert.spool_sync_failed", {
      sink: this.name,
      alerts: ids.length,
      first: ids[0],
      error: r?.ok ? r.unsynced ?? "" : "",
      note: "accepted and delivered; a host crash before the kernel writes them back may lose them",
    });
  }

  drop(alert: Alert, reason: string, error?: string): void {
    countDrop(this.stats, reason);
    this.o.telemetry?.add("latentwatch.alerts.dropped", 1, { reason, sink: this.name });
    this.o.log?.error("alert.dropped", {
      sink: this.name,
      reason,
      alert: alert.id,
      rule: alert.policy?.id,
      request: alert.requestId,
      error,
    });
  }

  delivered(alert: Alert | null, seq: number, duplicate: boolean): void {
    if (duplicate) {
      this.stats.duplicate++;
      this.o.telemetry?.add("latentwatch.alerts.duplicate", 1, { sink: this.name });
    } else {
      this.stats.delivered++;
      this.o.telemetry?.add("latentwatch.alerts.published", 1, { sink: this.name });
    }
    if (!alert) return;
    // from the alert's production (its `time`, so a spooled alert counts the restart too)
    const produced = Date.parse(alert.time);
    if (Number.isFinite(produced)) {
      this.o.telemetry?.observe("latentwatch.alert.ack_latency", (Date.now() - produced) / 1000, {
        sink: this.name,
      });
    }
    this.o.onPublished?.(alert, seq, duplicate);
  }

  retried(id: string, error: string, retryInMs: number): void {
    this.stats.retries++;
    this.o.telemetry?.add("latentwatch.alerts.publish_retries", 1, { sink: this.name });
    this.o.log?.warn("alert.publish_failed", {
      sink: this.name,
      alert: id,
      subject: this.o.subject,
      retry_in_ms: retryInMs,
      error,
    });
  }
}
