/**
 * Replay a recorded trace through a monitor offline: {@linkcode encodeTrace}'s
 * batches evaluated frame by frame in recorded order, every firing and every
 * alert built and given evidence by the stages serve runs (`offline.ts` loads
 * the monitor and encodes). `replay`, `policy test` and `policy calibrate`
 * report what this returns.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { Firing } from "../core/policy/engine.ts";
import { redactFiring, type RedactOptions } from "../core/redact.ts";
import { Evaluator } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import {
  emptyIntake,
  type EncodedBatch,
  encodeTrace,
  type EncodeTraceOptions,
  type IntakeStats,
  type OfflineMonitor,
} from "./offline.ts";
import { TraceReader } from "./reader.ts";

/** A firing raised during a replay, with where in the trace it happened. */
export interface ReplayFiring extends Firing {
  /** Trace record of the frame it fired on. */
  record: number;
  /** Recorded receive time of that frame (ms since the epoch). */
  receivedAt: number;
  /** Token text at `positions`, when the frames carried it. */
  text?: (string | undefined)[];
  /** The alert serve would publish for it (absent for a steer-only rule). */
  alertRecord?: Alert;
}

/** What a replay went through. */
export interface ReplayStats extends IntakeStats {
  records: number;
  firings: number;
  /** Alerts raised (firings less steer-only ones). */
  alerts: number;
  /** The trace's end record says frames were dropped while recording. */
  droppedWhileRecording: number;
  /** False when the trace has no end record (a crash, or still being written). */
  complete: boolean;
}

/** Options of {@linkcode replayTrace}. */
export interface ReplayOptions extends Omit<EncodeTraceOptions, "stats"> {
  onFiring?: (f: ReplayFiring) => void;
  /** Called with every alert, evidence attached, as serve publishes it. */
  onAlert?: (alert: Alert) => void;
  /** Called after each batch is evaluated (calibrate reads the latents here). */
  onBatch?: (b: EncodedBatch) => void;
  /**
   * The monitor's redaction of token text (`redaction:`); each rule's
   * `redact` applies in any case, the stricter winning, to alerts and to
   * the firings' `text`, description and dedup key. @default { mode: "none" }
   */
  redaction?: RedactOptions;
  /** The frame as the policies see it (`policy test`'s request overrides: tenant, model, metadata). */
  rewriteFrame?: (frame: Frame) => Frame;
}

/**
 * A frame whose evaluation failed offline (serve counts and skips it; a replay stops).
 *
 * @example
 * ```ts
 * const err = new ReplayEvaluationError(12, { cause: new Error("rule r1: window overflow") });
 * err.message; // "record 12: evaluation failed: rule r1: window overflow"
 * ```
 */
export class ReplayEvaluationError extends Error {
  constructor(readonly record: number, options: { cause: Error }) {
    super(`record ${record}: evaluation failed: ${options.cause.message}`, options);
    this.name = "ReplayEvaluationError";
  }
}

/**
 * Replay the trace at `path` through `monitor`: every firing and every
 * alert (built and given evidence by the stages serve runs).
 *
 * @example
 * ```ts
 * import type { OfflineMonitor } from "./offline.ts";
 * import { replayTrace } from "./replay.ts";
 * declare const monitor: OfflineMonitor;
 * const stats = await replayTrace(monitor, "demo.trace.gz", {
 *   onFiring: (f) => console.log(f.rule.def.id, f.requestId, f.positions),
 *   onAlert: (a) => console.log(JSON.stringify(a)),
 * });
 * ```
 */
export async function replayTrace(
  monitor: OfflineMonitor,
  path: string,
  opts: ReplayOptions = {},
): Promise<ReplayStats> {
  const reader = await TraceReader.open(path);
  const { config, generation: gen } = monitor;
  const evaluator = new Evaluator(gen.policies, {
    monitor: config.monitor,
    dIn: monitor.models.dIn,
    steering: config.steering,
    ...(opts.redaction ? { redaction: opts.redaction } : {}),
  });
  const floor: RedactOptions = opts.redaction ?? { mode: "none" };
  const evidence = new Evidence({ ...config.evidence, dIn: monitor.models.dIn });
  const stats: ReplayStats = {
    ...emptyIntake(),
    records: 0,
    firings: 0,
    alerts: 0,
    droppedWhileRecording: 0,
    complete: false,
  };
  const text = new Map<string, Map<number, string>>();
  for await (const batch of encodeTrace(monitor, reader, { ...opts, stats })) {
    const rewrite = opts.rewriteFrame;
    const frames = batch.frames.map((f) => rewrite ? rewrite(f.frame) : f.frame);
    evidence.remember(frames);
    const outcome = evaluator.evaluateBatch(
      gen,
      frames,
      batch.latents,
      (_, i) => batch.frames[i].record.receivedAt,
    );
    await evidence.attach(outcome.alerts, { encoders: gen.evidenceEncoders, labels: gen.labels });
    batch.frames.forEach(({ record }, i) => {
      const frame = frames[i];
      const o = outcome.frames[i];
      if ("error" in o) throw new ReplayEvaluationError(record.record, { cause: o.error });
      if (frame.tokenText) {
        let t = text.get(frame.requestId);
        if (!t) text.set(frame.requestId, t = new Map());
        frame.tokenText.forEach((s, i) => t!.set(frame.position + i, s));
      }
      let k = 0;
      for (const f of o.firings) {
        stats.firings++;
        const alert = f.alert ? o.alerts[k++] : undefined;
        const t = text.get(frame.requestId);
        opts.onFiring?.(redactFiring({
          ...f,
          record: record.record,
          receivedAt: record.receivedAt,
          ...(t ? { text: f.positions.map((p) => t.get(p)) } : {}),
          ...(alert ? { alertRecord: alert } : {}),
        }, floor));
        if (alert) {
          stats.alerts++;
          opts.onAlert?.(alert);
        }
      }
      if (frame.endOfRequest) text.delete(frame.requestId);
    });
    opts.onBatch?.(batch);
  }
  stats.records = reader.records;
  stats.complete = reader.end !== null;
  stats.droppedWhileRecording = reader.end?.dropped ?? 0;
  return stats;
}
