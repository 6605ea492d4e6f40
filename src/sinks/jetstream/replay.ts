/**
 * The spool replay loop of the JetStream sink: delivers spooled records,
 * oldest first, up to `maxInFlight` at a time, while NATS answers, and
 * backs off (the shared `Backoff`) after a round with a failure. The sink
 * (`./sink.ts`) owns the spool and its counters and hands the loop a
 * {@linkcode ReplayHost}.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import { Backoff } from "../../shared/backoff.ts";
import type { Spool } from "../spool.ts";
import type { StreamPublisher } from "./publisher.ts";
import type { JetStreamSinkOptions, JetStreamSinkStats, Outcome } from "./types.ts";

/** What the replay loop reads and calls on its sink. */
export interface ReplayHost {
  readonly name: string;
  readonly spool: Spool;
  readonly publisher: StreamPublisher;
  readonly o:
    & Required<
      Pick<JetStreamSinkOptions, "maxInFlight" | "pollMs" | "initialBackoffMs" | "maxBackoffMs">
    >
    & Pick<JetStreamSinkOptions, "stream" | "log" | "telemetry">;
  readonly stats: JetStreamSinkStats;
  /** Spooled ids being published (by the loop, or from memory): a round skips them. */
  readonly replaying: Set<string>;
  readonly closed: boolean;
  readonly stopping: boolean;
  readonly connected: boolean;
  sleep(ms: number): Promise<void>;
  delivered(alert: Alert | null, seq: number, duplicate: boolean): void;
  retried(id: string, error: string, retryInMs: number): void;
  drop(alert: Alert, reason: string, error?: string): void;
  gauge(): void;
}

const decoder = new TextDecoder();

/**
 * Deliver the spool, oldest first, up to `maxInFlight` at a time, while
 * NATS answers; back off (capped, doubling) after a round with a failure.
 */
export async function replaySpool(h: ReplayHost): Promise<void> {
  const spool = h.spool;
  const backoff = new Backoff(h.o.initialBackoffMs, h.o.maxBackoffMs);
  while (!h.closed) {
    // ids published from memory are skipped by the round: nothing else waiting means idle
    if (spool.pending <= h.replaying.size || !h.connected || h.stopping) {
      await h.sleep(h.o.pollMs);
      continue;
    }
    let ok: boolean;
    try {
      ok = await replayRound(h, spool, backoff.delay);
    } catch (err) {
      if (h.closed) break; // the spool closed under the round
      // the spool itself failed (a read error, a segment file gone): this
      // loop must outlive it, so count, say why and try again later
      h.stats.spoolErrors++;
      h.stats.retries++;
      h.o.telemetry?.add("latentwatch.alerts.publish_retries", 1, { sink: h.name });
      h.o.log?.error("alert.spool_replay_failed", {
        sink: h.name,
        dir: spool.dir,
        pending: spool.pending,
        retry_in_ms: backoff.delay,
        error: (err as Error)?.message ?? String(err),
      });
      ok = false;
    }
    if (ok) {
      backoff.reset();
    } else {
      await h.sleep(backoff.delay);
      backoff.grow();
    }
  }
}

/**
 * One replay round: publish up to `maxInFlight` of the oldest spooled
 * records and acknowledge what the stream took. False when a publish
 * failed (the caller backs off); throws when the spool fails.
 */
async function replayRound(h: ReplayHost, spool: Spool, backoff: number): Promise<boolean> {
  const batch = spool.oldest(h.o.maxInFlight, h.replaying);
  if (batch.length === 0) {
    await h.sleep(h.o.pollMs);
    return true;
  }
  const results = await Promise.all(batch.map(async (rec) => {
    h.replaying.add(rec.id);
    const alert = parseAlert(rec.data);
    try {
      const payload = h.publisher.payloadOf(rec.data, alert);
      if (typeof payload === "string") {
        const out: Outcome = { kind: "permanent", reason: "render_failed", error: payload };
        return { rec, alert, out };
      }
      return { rec, alert, out: await h.publisher.publish(rec.id, payload, alert) };
    } finally {
      h.replaying.delete(rec.id);
    }
  }));
  let failed = 0;
  for (const { rec, alert, out } of results) {
    if (h.closed) break; // the spool is closing: the record stays for the next run
    if (out.kind === "transient") {
      failed++;
      continue;
    }
    if (!spool.ack(rec.id)) continue; // acknowledged meanwhile (a late memory ack)
    if (out.kind === "permanent") {
      h.drop(alert ?? stubAlert(rec.id), out.reason, out.error);
      continue;
    }
    h.stats.spoolReplayed++;
    if (
      rec.firstAttemptMs > 0 &&
      Date.now() - rec.firstAttemptMs > h.o.stream.duplicateWindowMs
    ) {
      // a first attempt older than the dedup window may have been stored
      // with its ack lost; the stream could not tell this resend apart
      h.o.log?.warn("alert.resent_after_dedup_window", {
        alert: rec.id,
        first_attempt_ms_ago: Date.now() - rec.firstAttemptMs,
        duplicate_window_ms: h.o.stream.duplicateWindowMs,
      });
    }
    h.delivered(alert, out.seq, out.duplicate);
  }
  h.gauge();
  if (failed === 0) return true;
  const first = results.find((r) => r.out.kind === "transient")!;
  h.stats.retries += failed - 1;
  h.retried(first.rec.id, (first.out as { error: string }).error, backoff);
  return false;
}

function parseAlert(data: Uint8Array): Alert | null {
  try {
    return JSON.parse(decoder.decode(data)) as Alert;
  } catch {
    return null;
  }
}

/** Enough of an alert to log a drop when its spooled body does not parse. */
function stubAlert(id: string): Alert {
  return { id, policy: { id: "" }, requestId: "" } as unknown as Alert;
}
