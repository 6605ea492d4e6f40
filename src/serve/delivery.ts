/**
 * Alert delivery in `serve`, batch by batch: write-ahead to the durable sink,
 * then the batch's sequence checkpoint, then the release of each durable alert
 * to `onAlert` and the other sinks (docs/alert-delivery.md). Failures are
 * counted and logged, never thrown: a throwing sink or `onAlert` costs no
 * other sink its alert, and a checkpoint that cannot be written costs only
 * the lost-frame counts after a restart.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { AlertSink, Durability, DurableSink } from "../sinks/sink.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";

/** What {@linkcode AlertDelivery} needs. */
export interface AlertDeliveryOptions {
  /** Where alerts go; each has its own bounded queue. */
  sinks: readonly AlertSink[];
  /** The sink that makes alerts durable (may also be in `sinks`; it is not handed an alert twice). */
  durable?: DurableSink;
  /** Where each request's last durably processed Lw-Seq is kept across a restart. */
  checkpoints?: SeqCheckpoints;
  telemetry: Telemetry;
  log: Logger;
  /** Called for every durable alert, before the other sinks get it. */
  onAlert?: (alert: Alert) => void;
  /** Count and log an error at `stage` (`latentwatch.pipeline.errors`); delivery goes on. */
  onError: (stage: string, err: unknown, fields: Record<string, string | number>) => void;
}

/** A batch's checkpoint: the seq each request resumes from after a restart, and the requests it ended. */
export interface Checkpoint {
  next: Map<string, number>;
  ended: string[];
}

/**
 * The checkpoint of a batch of frames: per request, one past the highest seq
 * seen, unless the request ended in the batch.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * declare const frames: Frame[];
 * const { next, ended } = checkpointOf(frames);
 * ```
 */
export function checkpointOf(
  frames: readonly Pick<Frame, "requestId" | "seq" | "endOfRequest">[],
): Checkpoint {
  const next = new Map<string, number>();
  const ended: string[] = [];
  for (const f of frames) {
    if (f.endOfRequest) {
      next.delete(f.requestId);
      ended.push(f.requestId);
    } else next.set(f.requestId, Math.max(next.get(f.requestId) ?? 0, f.seq + 1));
  }
  return { next, ended };
}

/**
 * Delivers each batch's alerts and keeps the checkpoints in step with them.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * import type { Frame } from "../core/frame/format.ts";
 * import { Logger } from "../shared/log.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const alerts: Alert[];
 * declare const frames: Frame[];
 * const delivery = new AlertDelivery({
 *   sinks: [],
 *   telemetry: new Telemetry(),
 *   log: new Logger(),
 *   onError: () => {},
 * });
 * delivery.deliver(alerts, frames);
 * const lost = await delivery.drain(10_000);
 * ```
 */
export class AlertDelivery {
  readonly #o: AlertDeliveryOptions;

  constructor(opts: AlertDeliveryOptions) {
    this.#o = opts;
  }

  /** The sinks alerts go to. */
  get sinks(): readonly AlertSink[] {
    return this.#o.sinks;
  }

  /** True while some sink still has alerts queued. */
  get busy(): boolean {
    return this.#o.sinks.some((sink) => sink.stats.queued > 0);
  }

  /**
   * Deliver a batch's alerts: write-ahead, then the checkpoint, then the
   * other sinks. The two writes follow each other in one tick, so a restart
   * resumes each request's seq right after the last batch whose alerts are
   * durable, and counts what a crash cut off after it as lost (the gap its
   * next frame shows).
   */
  deliver(alerts: Alert[], frames: readonly Frame[]): void {
    const checkpoint = checkpointOf(frames);
    const results = alerts.length > 0 ? this.#persist(alerts) : null;
    this.checkpoint(checkpoint);
    if (results) this.#releaseAll(alerts, results);
  }

  /** Record a batch's checkpoint (see {@linkcode SeqCheckpoints.record}). */
  checkpoint({ next, ended }: Checkpoint): void {
    const cp = this.#o.checkpoints;
    if (!cp) return;
    try {
      cp.record(next, ended);
    } catch (err) {
      this.#checkpointFailed(cp, err);
    }
  }

  /** Record frames `[from, to)` of a request as counted lost (see {@linkcode SeqCheckpoints.lost}). */
  lost(requestId: string, from: number, to: number): void {
    const cp = this.#o.checkpoints;
    if (!cp) return;
    try {
      cp.lost(requestId, from, to);
    } catch (err) {
      this.#checkpointFailed(cp, err);
    }
  }

  /** Forget the checkpoints of requests that expired (a failure is counted where batches write theirs). */
  expired(requestIds: string[]): void {
    try {
      this.#o.checkpoints?.record(new Map(), requestIds);
    } catch { /* counted where batches write their checkpoints */ }
  }

  /**
   * Wait (up to `timeoutMs`) for every sink to deliver what it holds, in
   * parallel, then close them. Resolves with the number of alerts lost (each
   * counted and logged by its sink; JetStream spools what it cannot send).
   */
  async drain(timeoutMs: number): Promise<number> {
    const lost = await Promise.all(this.#o.sinks.map((sink) => sink.drain(timeoutMs)));
    for (const sink of this.#o.sinks) await sink.close();
    return lost.reduce((a, b) => a + b, 0);
  }

  /** Make a batch's alerts durable (write-ahead, one write); without a durable sink they are as they are. */
  #persist(alerts: Alert[]): Durability[] {
    return this.#o.durable?.persist(alerts) ?? alerts.map(() => true);
  }

  /**
   * Count each durable alert and hand it to the other sinks. An alert the
   * durable sink could not write ahead is released once the stream
   * acknowledged it, or never when it was dropped (counted and logged by
   * that sink).
   */
  #releaseAll(alerts: Alert[], results: Durability[]): void {
    alerts.forEach((alert, i) => {
      const d = results[i];
      if (d === true) this.#release(alert);
      // dropped (false): counted and logged by the durable sink, seen by no sink
      else {
        d.then((ok) => ok && this.#release(alert)).catch((err) =>
          this.#o.onError("release", err, { alert: alert.id })
        );
      }
    });
  }

  /**
   * Count a durable alert and hand it to every sink but the durable one.
   * Never throws: a throwing `onAlert` or sink is counted
   * (`latentwatch.pipeline.errors{stage=on_alert|sink_submit}`) and logged,
   * and the other sinks still get the alert.
   */
  #release(alert: Alert): void {
    this.#o.telemetry.add("latentwatch.alerts", 1, {
      rule: alert.policy.id,
      severity: alert.severity,
    });
    try {
      this.#o.onAlert?.(alert);
    } catch (err) {
      this.#o.onError("on_alert", err, { alert: alert.id });
    }
    for (const sink of this.#o.sinks) {
      if (sink === this.#o.durable) continue;
      try {
        sink.submit(alert);
      } catch (err) {
        this.#o.onError("sink_submit", err, { alert: alert.id, sink: sink.name });
      }
    }
  }

  #checkpointFailed(cp: SeqCheckpoints, err: unknown): void {
    this.#o.telemetry.add("latentwatch.checkpoint.errors");
    this.#o.log.error("checkpoint.write_failed", {
      path: cp.path,
      error: (err as Error).message,
      note: "after a restart, frames lost while down may be miscounted",
    });
  }
}
