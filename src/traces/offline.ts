/**
 * Run a monitor OFFLINE over a recorded trace: the same SAEs (onnxruntime),
 * probes and policy engine as `serve`, fed from a trace file instead of the
 * bus. Used by `replay`, `policy test` and `policy calibrate`.
 *
 * Frames are decoded strictly (`decodeFrame`), checked against the monitor's
 * model and hook, batched up to the monitor's `max_batch_tokens`, encoded,
 * then evaluated frame by frame in recorded order, so windows and
 * suppression see the requests exactly as the sidecar did. The engine's
 * clock is the recorded receive time, which makes time-based suppression
 * replay deterministically.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import { compilePolicySet } from "../core/policy/compile.ts";
import { type Firing, PolicyEngine } from "../core/policy/engine.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { loadPolicyFileDef } from "../config/policy_file.ts";
import { createOrtEncoder, createProbeEncoder } from "../runtime/ort_encoder.ts";
import { loadMonitorModels, type MonitorModels } from "../serve/components.ts";
import { decodeMonitorFrame, encodeFrames, tokenBatch } from "../serve/frames.ts";
import { Logger } from "../shared/log.ts";
import { TraceReader } from "./reader.ts";
import type { TraceRecord } from "./format.ts";

/** A compiled policy set, as `compilePolicySet` returns it. */
export type PolicySet = ReturnType<typeof compilePolicySet>;

/** What the compiler needs to know about each SAE and probe. */
export type SignalInfo = {
  kind: "sae" | "probe";
  dSae: number;
  labels?: ReadonlyMap<number, string>;
};

/** A monitor's components, loaded for offline runs. */
export interface OfflineMonitor {
  config: MonitorConfig;
  models: MonitorModels;
  /** The monitor's policy files, parsed. */
  files: PolicyFileDef[];
  signals: Map<string, SignalInfo>;
  set: PolicySet;
  /** Encoder id (SAE or probe) → encoder; every latent of every SAE is encoded. */
  encoders: Map<string, Encoder>;
  close(): Promise<void>;
}

/** Options of {@linkcode loadOfflineMonitor}. */
export interface OfflineLoadOptions {
  /** Where loading progress goes (stderr, quiet by default). */
  log?: Logger;
  /** Use these parsed policy files instead of reading `config.policies`. */
  files?: PolicyFileDef[];
}

/**
 * Load the SAEs, probes and policy files of `config`, compile the policies
 * and build one onnxruntime encoder per SAE and probe. Every latent is
 * encoded (no watched subset): offline, exactness for any rule set, e.g. the
 * derived sets of `calibrate`, matters more than speed.
 *
 * @example
 * ```ts
 * const m = await loadOfflineMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * const stats = await replayTrace(m, "demo.trace.gz", { onFiring: (f) => console.log(f.rule.def.id) });
 * await m.close();
 * ```
 */
export async function loadOfflineMonitor(
  config: MonitorConfig,
  opts: OfflineLoadOptions = {},
): Promise<OfflineMonitor> {
  const log = opts.log ?? new Logger({ quiet: true });
  const models = await loadMonitorModels(config, log);
  const files: PolicyFileDef[] = opts.files ?? [];
  if (!opts.files) { for (const f of config.policies) files.push(await loadPolicyFileDef(f)); }
  const signals = new Map<string, SignalInfo>();
  for (const [id, s] of models.saes) {
    signals.set(id, { kind: "sae", dSae: s.dSae, ...(s.labels ? { labels: s.labels } : {}) });
  }
  for (const [id, p] of models.probes) signals.set(id, { kind: "probe", dSae: p.n });
  const set = compilePolicySet(files, signals);
  const encoders = new Map<string, Encoder>();
  try {
    for (const [id, sae] of models.saes) encoders.set(id, await createOrtEncoder(sae));
    for (const [id, probe] of models.probes) encoders.set(id, await createProbeEncoder(probe));
  } catch (err) {
    for (const e of encoders.values()) await e.close();
    throw err;
  }
  return {
    config,
    models,
    files,
    signals,
    set,
    encoders,
    close: async () => {
      for (const e of encoders.values()) await e.close();
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
  latents: Map<string, SparseLatents[]>;
}

/** A frame of the trace the sidecar would have rejected. */
export interface RejectedFrame {
  record: TraceRecord;
  error: Error;
}

/** Progress through a trace file. */
export interface TraceProgress {
  path: string;
  records: number;
  bytesRead: number;
  fileSize: number;
}

/** Options of {@linkcode encodeTrace}. */
export interface EncodeTraceOptions {
  onRejected?: (r: RejectedFrame) => void;
  /** Called about every `progressMs` (default 1000) while reading. */
  onProgress?: (p: TraceProgress) => void;
  progressMs?: number;
}

/**
 * Decode, batch and encode every frame of `reader` with the monitor's
 * encoders, yielding batches in recorded order. Frames that do not decode,
 * or are for another model or hook, go to `onRejected` and are skipped, as
 * the sidecar drops them.
 *
 * @example
 * ```ts
 * for await (const batch of encodeTrace(monitor, await TraceReader.open(path))) {
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
  const every = opts.progressMs ?? 1000;
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
      frame = decodeMonitorFrame(record, {
        model: config.model,
        hook: config.hook,
        dIn: models.dIn,
      });
    } catch (err) {
      opts.onRejected?.({ record, error: err as Error });
      continue;
    }
    pending.push({ frame, record });
    pendingTokens += frame.tokens;
    if (pendingTokens >= step) yield await flush();
  }
  if (pending.length > 0) yield await flush();
}

/** A firing raised during a replay, with where in the trace it happened. */
export interface ReplayFiring extends Firing {
  /** Trace record of the frame it fired on. */
  record: number;
  /** Recorded receive time of that frame (ms since the epoch). */
  receivedAt: number;
  /** Token text at `positions`, when the frames carried it. */
  text?: (string | undefined)[];
}

/** What a replay went through. */
export interface ReplayStats {
  records: number;
  frames: number;
  tokens: number;
  requests: number;
  rejected: number;
  /** Frames missing by `Lw-Seq` (lost before they were recorded). */
  lost: number;
  firings: number;
  /** The trace's end record says frames were dropped while recording. */
  droppedWhileRecording: number;
  /** False when the trace has no end record (a crash, or still being written). */
  complete: boolean;
}

/** Options of {@linkcode replayTrace}. */
export interface ReplayOptions extends EncodeTraceOptions {
  onFiring?: (f: ReplayFiring) => void;
  /** Called after each batch is evaluated (calibrate reads the latents here). */
  onBatch?: (b: EncodedBatch) => void;
  /** Use this policy set instead of the monitor's. */
  set?: PolicySet;
}

/**
 * Replay the trace at `path` through `monitor` and report every firing.
 *
 * @example
 * ```ts
 * const stats = await replayTrace(monitor, "demo.trace.gz", {
 *   onFiring: (f) => console.log(f.rule.def.id, f.requestId, f.positions),
 * });
 * ```
 */
export async function replayTrace(
  monitor: OfflineMonitor,
  path: string,
  opts: ReplayOptions = {},
): Promise<ReplayStats> {
  const reader = await TraceReader.open(path);
  let now = 0;
  const engine = new PolicyEngine(opts.set ?? monitor.set, { now: () => now });
  const stats: ReplayStats = {
    records: 0,
    frames: 0,
    tokens: 0,
    requests: 0,
    rejected: 0,
    lost: 0,
    firings: 0,
    droppedWhileRecording: 0,
    complete: false,
  };
  const seq = new Map<string, number>();
  const text = new Map<string, Map<number, string>>();
  for await (
    const batch of encodeTrace(monitor, reader, {
      ...opts,
      onRejected: (r) => {
        stats.rejected++;
        opts.onRejected?.(r);
      },
    })
  ) {
    for (const { frame, record, firstRow } of batch.frames) {
      now = record.receivedAt;
      stats.frames++;
      stats.tokens += frame.tokens;
      const expected = seq.get(frame.requestId);
      if (expected === undefined) stats.requests++;
      if (frame.seq > (expected ?? 0)) stats.lost += frame.seq - (expected ?? 0);
      seq.set(frame.requestId, Math.max(expected ?? 0, frame.seq + 1));
      if (frame.tokenText) {
        let t = text.get(frame.requestId);
        if (!t) text.set(frame.requestId, t = new Map());
        frame.tokenText.forEach((s, i) => t!.set(frame.position + i, s));
      }
      if (frame.tokens > 0) {
        const firings = engine.evaluate(tokenBatch(frame, firstRow, batch.latents));
        for (const f of firings) {
          stats.firings++;
          const t = text.get(frame.requestId);
          opts.onFiring?.({
            ...f,
            record: record.record,
            receivedAt: record.receivedAt,
            ...(t ? { text: f.positions.map((p) => t.get(p)) } : {}),
          });
        }
      }
      if (frame.endOfRequest) {
        engine.endRequest(frame.requestId);
        seq.delete(frame.requestId);
        text.delete(frame.requestId);
      }
    }
    opts.onBatch?.(batch);
  }
  stats.records = reader.records;
  stats.complete = reader.end !== null;
  stats.droppedWhileRecording = reader.end?.dropped ?? 0;
  return stats;
}
