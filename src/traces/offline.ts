/**
 * Run a monitor OFFLINE over a recorded trace: the stages `serve` runs
 * (`src/pipeline/`: decode and sequence tracking, the same generation of
 * encoders, evaluation, alert building, evidence), fed from a trace file
 * instead of the bus. Used by `replay`, `policy test` and `policy
 * calibrate`, so what they report is the `Alert` that `serve` publishes.
 *
 * Frames are decoded strictly, checked against the monitor's model and
 * hook, followed by `Lw-Seq` (a repeated seq is dropped, as serve drops
 * it), batched up to the monitor's `max_batch_tokens`, encoded, then
 * evaluated frame by frame in recorded order (`replay.ts`), so windows and suppression
 * see the requests exactly as the sidecar did. The engine's clock (and the
 * alerts' `time`) is the recorded receive time, which makes time-based
 * suppression replay deterministically.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import type { Encoder } from "../core/sae.ts";
import type { LatentTable } from "../core/latent_rows.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import { compilePolicySet, type SignalInfo } from "../core/policy/compile.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { loadPolicyFileDef } from "../config/policy_file.ts";
import { decodeMonitorFrame } from "../pipeline/decode.ts";
import { encodeFrames } from "../pipeline/encode.ts";
import { allEncoders, buildGeneration, type Generation } from "../pipeline/generation.ts";
import { loadMonitorModels, type MonitorModels, monitorSignals } from "../pipeline/models.ts";
import { SequenceTracker } from "../pipeline/sequence.ts";
import { Logger } from "../shared/log.ts";
import { TraceReader } from "./reader.ts";
import type { TraceRecord } from "./format.ts";

export type { SignalInfo };

/** A compiled policy set, as `compilePolicySet` returns it. */
export type PolicySet = ReturnType<typeof compilePolicySet>;

/** A monitor's components, loaded for offline runs. */
export interface OfflineMonitor {
  config: MonitorConfig;
  models: MonitorModels;
  /** The monitor's policy files, parsed. */
  files: PolicyFileDef[];
  signals: Map<string, SignalInfo>;
  set: PolicySet;
  /** What serve would evaluate with: the encoders `set` needs, evidence encoders, labels, steering. */
  generation: Generation;
  /** Encoder id (SAE or probe) → encoder (`generation.encoders`). */
  encoders: ReadonlyMap<string, Encoder>;
  close(): Promise<void>;
}

/** Options of {@linkcode loadOfflineMonitor}. */
export interface OfflineLoadOptions {
  /** Where loading progress goes (stderr, quiet by default). */
  log?: Logger;
  /** Use these parsed policy files instead of reading `config.policies`. */
  files?: PolicyFileDef[];
  /**
   * Attach evidence (top latents) to alerts, as `config.evidence` says
   * (default true). `policy test` and `policy calibrate` read no alerts:
   * false builds no evidence encoders and runs no extra encode per alert
   * (the monitor's `config.evidence.topLatents` becomes 0).
   */
  evidence?: boolean;
}

/**
 * Load the SAEs, probes and policy files of `config`, compile the policies
 * and build the generation serve would build from them (`buildGeneration`:
 * the watched latents where that is exact, evidence encoders, steering
 * resolved), on the monitor's execution provider.
 *
 * @example
 * ```ts
 * import { loadMonitorConfig } from "../config/monitor.ts";
 * import { loadOfflineMonitor } from "./offline.ts";
 * import { replayTrace } from "./replay.ts";
 * const m = await loadOfflineMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * const stats = await replayTrace(m, "demo.trace.gz", { onAlert: (a) => console.log(a.policy.id) });
 * await m.close();
 * ```
 */
export async function loadOfflineMonitor(
  config: MonitorConfig,
  opts: OfflineLoadOptions = {},
): Promise<OfflineMonitor> {
  if (opts.evidence === false) {
    config = { ...config, evidence: { ...config.evidence, topLatents: 0 } };
  }
  const log = opts.log ?? new Logger({ quiet: true });
  const models = await loadMonitorModels(config, log);
  const files: PolicyFileDef[] = opts.files ?? [];
  if (!opts.files) { for (const f of config.policies) files.push(await loadPolicyFileDef(f)); }
  const signals = monitorSignals(models);
  const set = compilePolicySet(files, signals);
  const { generation } = await buildGeneration({
    models,
    policies: set,
    // encoder lines are serve's start-up report, not replay's
    log: new Logger({ quiet: true }),
    execution: config.execution,
    evidence: config.evidence,
    verdictEncoders: false, // no gated frame to answer
  });
  return {
    config,
    models,
    files,
    signals,
    set,
    generation,
    encoders: generation.encoders,
    close: async () => {
      for (const e of allEncoders(generation)) await e.close();
    },
  };
}

/** A frame of a trace, decoded, with where it was in the file. */
export interface TraceFrame {
  frame: Frame;
  record: TraceRecord;
  /** Row of the frame's first token in the batch's latents. */
  firstRow: number;
}

/** Frames encoded together, in recorded order. */
export interface EncodedBatch {
  frames: TraceFrame[];
  /** Encoder id → one entry per token row of the batch. */
  latents: Map<string, LatentTable>;
}

/** A frame of the trace the sidecar would have rejected. */
export interface RejectedFrame {
  record: TraceRecord;
  error: Error;
}

/** A decoded frame of the trace that serve would drop before batching it. */
export interface DroppedFrame {
  record: TraceRecord;
  frame: Frame;
  reason: "frame_too_large";
}

/** Progress through a trace file. */
export interface TraceProgress {
  path: string;
  records: number;
  bytesRead: number;
  fileSize: number;
}

/** What intake saw, as serve counts it. */
export interface IntakeStats {
  /** Frames accepted (decoded, for the monitor, not repeated). */
  frames: number;
  tokens: number;
  /** Requests seen (a request ended and begun again counts twice). */
  requests: number;
  rejected: number;
  /** Frames missing by `Lw-Seq` (lost before they were recorded). */
  lost: number;
  /** Frames dropped for a repeated `Lw-Seq` (a re-sent frame). */
  repeated: number;
  /**
   * Frames dropped for holding more tokens than `batching.max_queue_tokens`
   * (serve's `latentwatch.frames.dropped{reason=frame_too_large}`).
   */
  tooLarge: number;
}

/** Options of {@linkcode encodeTrace}. */
export interface EncodeTraceOptions {
  onRejected?: (r: RejectedFrame) => void;
  /** A decoded frame serve would drop (`frame_too_large`). */
  onDropped?: (d: DroppedFrame) => void;
  /** Called about every `progressMs` (default 1000) while reading. */
  onProgress?: (p: TraceProgress) => void;
  progressMs?: number;
  /** Counted into as frames are read. */
  stats?: IntakeStats;
}

/**
 * Decode, track, batch and encode every frame of `reader` with the
 * monitor's encoders, yielding batches in recorded order. Frames that do not
 * decode, or are for another model or hook, go to `onRejected` and are
 * skipped, a repeated `Lw-Seq` is dropped, and so is a frame of more tokens
 * than `batching.max_queue_tokens` (`frame_too_large`), as the sidecar does.
 *
 * @example
 * ```ts
 * import { TraceReader } from "./reader.ts";
 * import { encodeTrace, type OfflineMonitor } from "./offline.ts";
 * declare const monitor: OfflineMonitor;
 * for await (const batch of encodeTrace(monitor, await TraceReader.open("t.trace"))) {
 *   for (const { frame, firstRow } of batch.frames) console.log(frame.requestId, firstRow);
 * }
 * ```
 */
export async function* encodeTrace(
  monitor: OfflineMonitor,
  reader: TraceReader,
  opts: EncodeTraceOptions = {},
): AsyncGenerator<EncodedBatch> {
  const { config, models } = monitor;
  const step = config.batching.maxBatchTokens;
  const maxQueueTokens = config.batching.maxQueueTokens;
  const every = opts.progressMs ?? 1000;
  const stats = opts.stats ?? emptyIntake();
  const seqs = new SequenceTracker();
  const expect = { model: config.model, hook: config.hook, dIn: models.dIn };
  let lastProgress = Date.now();
  let pending: { frame: Frame; record: TraceRecord }[] = [];
  let pendingTokens = 0;

  const flush = async (): Promise<EncodedBatch> => {
    const items = pending;
    pending = [];
    pendingTokens = 0;
    const frames: TraceFrame[] = [];
    let row = 0;
    for (const it of items) {
      frames.push({ ...it, firstRow: row });
      row += it.frame.tokens;
    }
    const latents = await encodeFrames(monitor.encoders, items.map((i) => i.frame), {
      dIn: models.dIn,
      maxBatchTokens: step,
    });
    return { frames, latents };
  };

  for await (const record of reader) {
    if (opts.onProgress && Date.now() - lastProgress >= every) {
      lastProgress = Date.now();
      opts.onProgress({
        path: reader.path,
        records: reader.records,
        bytesRead: reader.bytesRead,
        fileSize: reader.fileSize,
      });
    }
    let frame: Frame;
    try {
      frame = decodeMonitorFrame(record, expect);
    } catch (err) {
      stats.rejected++;
      opts.onRejected?.({ record, error: err as Error });
      continue;
    }
    const seq = seqs.track(frame, record.receivedAt);
    if (!seq.accepted) {
      stats.repeated++;
      continue;
    }
    if (seq.first) stats.requests++;
    stats.lost += seq.lost;
    if (frame.tokens > maxQueueTokens) {
      // serve's batcher cannot queue it: dropped, its seq already counted (as serve does)
      stats.tooLarge++;
      opts.onDropped?.({ record, frame, reason: "frame_too_large" });
      continue;
    }
    stats.frames++;
    stats.tokens += frame.tokens;
    pending.push({ frame, record });
    pendingTokens += frame.tokens;
    if (pendingTokens >= step) yield await flush();
  }
  if (pending.length > 0) yield await flush();
}

/**
 * Intake counters at zero: what {@linkcode encodeTrace} counts into when
 * given no `stats`, and what a replay's statistics start from.
 *
 * @example
 * ```ts
 * emptyIntake().frames; // 0
 * ```
 */
export function emptyIntake(): IntakeStats {
  return { frames: 0, tokens: 0, requests: 0, rejected: 0, lost: 0, repeated: 0, tooLarge: 0 };
}
