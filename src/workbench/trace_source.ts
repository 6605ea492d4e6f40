/**
 * The workbench's trace data source: trace files encoded once by the
 * monitor's encoders (`encodeTrace`, the path `replay` takes) plus a full
 * encode of every SAE (the evidence encoders, every latent), kept in memory
 * batch by batch, and evaluated by the stages serve runs (`Evaluator`,
 * `Evidence`) for the monitor's policies or a policy text being previewed.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { CompiledPolicySet } from "../core/policy/compile.ts";
import type { SparseLatents } from "../core/sae.ts";
import { type LatentTable, rowOf } from "../core/latent_rows.ts";
import { encodeFrames } from "../pipeline/encode.ts";
import { Evaluator } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import {
  encodeTrace,
  type OfflineMonitor,
  type RejectedFrame,
  type TraceProgress,
} from "../traces/offline.ts";
import { TraceReader } from "../traces/reader.ts";

/** Frames encoded together, with every latent of every SAE and every probe score. */
export interface StoredBatch {
  frames: Frame[];
  receivedAt: number[];
  /** Encoder id → one row per token of the batch (SAEs: every latent). */
  latents: Map<string, LatentTable>;
}

/** Where one request's tokens are in the stored batches. */
export interface TokenRef {
  batch: number;
  row: number;
}

/** A request of the loaded traces. */
export interface StoredRequest {
  id: string;
  tenant?: string;
  /** Token text by position ("" where the frames carried none). */
  tokens: string[];
  /** Position → where its latents are. */
  refs: TokenRef[];
}

/** A firing of one rule in one request, with what serve would publish for it. */
export interface EvaluatedFiring {
  rule: string;
  requestId: string;
  positions: number[];
  alert?: Alert;
  steer: readonly unknown[];
}

/** What evaluating a policy set over the store gave. */
export interface Evaluation {
  firings: EvaluatedFiring[];
  /** Request id → its firings, in order. */
  byRequest: Map<string, EvaluatedFiring[]>;
}

/** Options of {@linkcode TraceStore.load}. */
export interface TraceLoadOptions {
  onProgress?: (p: TraceProgress) => void;
  /** A frame the monitor rejects (another model or hook, undecodable): skipped. */
  onRejected?: (r: RejectedFrame) => void;
}

/** Loaded traces: the stored batches and the requests in them. */
export class TraceStore {
  readonly batches: StoredBatch[] = [];
  /** Batch number of `batches[0]` (a live store forgets its oldest batches). */
  protected base = 0;
  readonly requests = new Map<string, StoredRequest>();
  readonly paths: string[] = [];

  constructor(readonly monitor: OfflineMonitor) {}

  /**
   * Read, encode and store the traces at `paths` (in order).
   *
   * @example
   * ```ts
   * import type { OfflineMonitor } from "../traces/offline.ts";
   * import { TraceStore } from "./trace_source.ts";
   * declare const monitor: OfflineMonitor;
   * const store = await TraceStore.load(monitor, ["demo.trace.gz"]);
   * console.log(store.requests.size);
   * ```
   */
  static async load(
    monitor: OfflineMonitor,
    paths: readonly string[],
    opts: TraceLoadOptions = {},
  ): Promise<TraceStore> {
    const store = new TraceStore(monitor);
    for (const p of paths) await store.add(p, opts);
    return store;
  }

  /** Read, encode and store one more trace; returns the ids of the requests it holds. */
  async add(path: string, opts: TraceLoadOptions = {}): Promise<string[]> {
    const ids = new Set<string>();
    const reader = await TraceReader.open(path);
    const { monitor } = this;
    const full = monitor.generation.evidenceEncoders;
    for await (
      const batch of encodeTrace(monitor, reader, {
        onProgress: opts.onProgress,
        onRejected: opts.onRejected,
      })
    ) {
      const frames = batch.frames.map((f) => f.frame);
      const latents = new Map(batch.latents);
      if (full && full.size > 0) {
        const all = await encodeFrames(full, frames, {
          dIn: monitor.models.dIn,
          maxBatchTokens: monitor.config.batching.maxBatchTokens,
        });
        for (const [id, rows] of all) latents.set(id, rows);
      }
      const b = this.batches.length;
      this.batches.push({
        frames,
        receivedAt: batch.frames.map((f) => f.record.receivedAt),
        latents,
      });
      batch.frames.forEach(({ frame, firstRow }) => {
        ids.add(frame.requestId);
        let r = this.requests.get(frame.requestId);
        if (!r) {
          r = { id: frame.requestId, tokens: [], refs: [] };
          this.requests.set(frame.requestId, r);
        }
        if (frame.tenant !== undefined) r.tenant = frame.tenant;
        indexTokens(r, frame, b, firstRow);
      });
    }
    this.paths.push(path);
    return [...ids];
  }

  /** Keep one encoded batch and index its requests' tokens; returns the request ids in it. */
  protected store(batch: StoredBatch): string[] {
    const b = this.base + this.batches.length;
    this.batches.push(batch);
    const ids: string[] = [];
    let firstRow = 0;
    for (const frame of batch.frames) {
      ids.push(frame.requestId);
      let r = this.requests.get(frame.requestId);
      if (!r) {
        r = { id: frame.requestId, tokens: [], refs: [] };
        this.requests.set(frame.requestId, r);
      }
      if (frame.tenant !== undefined) r.tenant = frame.tenant;
      indexTokens(r, frame, b, firstRow);
      firstRow += frame.tokens;
    }
    return ids;
  }

  /** The latents of encoder `id` at one token (undefined when not stored). */
  row(ref: TokenRef | undefined, id: string): Readonly<SparseLatents> | undefined {
    return ref ? rowOf(this.batches[ref.batch - this.base]?.latents.get(id), ref.row) : undefined;
  }

  /**
   * Evaluate `policies` over every stored batch in recorded order, as
   * serve evaluates them (engine clock = recorded receive time), with
   * evidence attached to the alerts.
   */
  async evaluate(policies: CompiledPolicySet): Promise<Evaluation> {
    const { monitor } = this;
    const base = monitor.generation;
    const gen: Generation = {
      ...base,
      policies,
      // steer ops are resolved per compiled action: only the monitor's own set has them
      ...(policies === base.policies ? {} : { steerOps: new Map() }),
    };
    const evaluator = new Evaluator(policies, {
      monitor: monitor.config.monitor,
      dIn: monitor.models.dIn,
      steering: monitor.config.steering,
    });
    const evidence = new Evidence({ ...monitor.config.evidence, dIn: monitor.models.dIn });
    const out: Evaluation = { firings: [], byRequest: new Map() };
    // a snapshot: a live store appends and drops batches while this awaits
    for (const batch of [...this.batches]) {
      evidence.remember(batch.frames);
      const outcome = evaluator.evaluateBatch(
        gen,
        batch.frames,
        batch.latents,
        (_, i) => batch.receivedAt[i],
      );
      await evidence.attach(outcome.alerts, {
        encoders: base.evidenceEncoders,
        labels: base.labels,
      });
      outcome.frames.forEach((o, i) => {
        if ("error" in o) {
          throw new Error(
            `request ${batch.frames[i].requestId}: evaluation failed: ${o.error.message}`,
            { cause: o.error },
          );
        }
        let k = 0;
        for (const f of o.firings) {
          const e: EvaluatedFiring = {
            rule: f.rule.id,
            requestId: f.requestId,
            positions: f.positions,
            steer: f.steer,
            ...(f.alert ? { alert: o.alerts[k++] } : {}),
          };
          out.firings.push(e);
          const list = out.byRequest.get(f.requestId) ?? [];
          list.push(e);
          out.byRequest.set(f.requestId, list);
        }
      });
    }
    return out;
  }
}

/** Positions past this are not shown: a request's token arrays stay dense and bounded. */
export const MAX_TOKENS_PER_REQUEST = 1 << 16;

/** Index `frame`'s tokens in `r` (batch `b`, rows from `firstRow`), up to the bound. */
function indexTokens(
  r: { tokens: string[]; refs: { batch: number; row: number }[] },
  frame: { position: number; tokens: number; tokenText?: readonly string[] },
  b: number,
  firstRow: number,
): void {
  for (let i = 0; i < frame.tokens; i++) {
    const pos = frame.position + i;
    // a position far past the request's tokens would make a huge sparse array
    if (pos >= MAX_TOKENS_PER_REQUEST || pos > r.tokens.length + 4096) return;
    r.tokens[pos] = frame.tokenText?.[i] ?? r.tokens[pos] ?? "";
    r.refs[pos] = { batch: b, row: firstRow + i };
  }
}
