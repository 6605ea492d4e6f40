/**
 * The monitor pipeline: tap frames in from the bus → strict decode →
 * bounded micro-batch across requests → encode with each SAE → policy
 * evaluation per token → alerts to the alert publisher. Every rejected or
 * dropped frame is counted and logged with its subject and request id.
 *
 * @module
 */
import {
  type Alert,
  type AlertEvidence,
  alertId,
  type AlertLatentValue,
  type AlertProbeScore,
  type AlertTopLatent,
  traceContext,
} from "../core/alert.ts";
import { atlasOf } from "../core/render/atlas.ts";
import { type BatchLimits, MicroBatcher } from "../core/batcher.ts";
import { ActivationRing } from "../core/activation_ring.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import type { CompiledPolicySet, CompiledRule } from "../core/policy/compile.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import { encodeCommand, encodeVerdict } from "../core/steer/encode.ts";
import { parseAck } from "../core/steer/parse.ts";
import { type GateVerdict, type SteerCommand, type SteerOp } from "../core/steer/protocol.ts";
import { steerAckSubject, steerSubject } from "../core/steer/subjects.ts";
import { type Firing, PolicyEngine } from "../core/policy/engine.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { Bus, BusMessage, BusSubscription } from "../bus/bus.ts";
import type { AlertSink, Durability, DurableSink } from "../sinks/sink.ts";
import { type Resume, type SeqCheckpoints, uncountedBefore } from "./checkpoints.ts";
import { decodeMonitorFrame, encodeFrames, type Scratch, tokenBatch } from "./frames.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";

/**
 * What the pipeline evaluates with: the encoders and the policies they were
 * built for. A hot reload swaps the whole generation at once, between
 * batches, so a batch is always encoded and evaluated by one generation.
 */
export interface Generation {
  /** Encoder id (SAE or probe) → encoder. */
  encoders: ReadonlyMap<string, Encoder>;
  policies: CompiledPolicySet;
  /** SAE id → latent labels, attached to alerts. */
  labels?: ReadonlyMap<string, ReadonlyMap<number, string>>;
  /** Each steer action of the policies, resolved into what a tap applies. */
  steerOps?: ReadonlyMap<SteerAction, SteerOp>;
  /** SAE id → an encoder reporting every latent, for the evidence attached to alerts. */
  evidenceEncoders?: ReadonlyMap<string, Encoder>;
}

/** What a {@linkcode Pipeline} needs. */
export interface PipelineOptions {
  monitor: string;
  model: string;
  hook: string;
  /** Subject filter the tap frames arrive on. */
  subject: string;
  /** Width of the activations every SAE reads. */
  dIn: number;
  /** SAE id → encoder. */
  encoders: ReadonlyMap<string, Encoder>;
  policies: CompiledPolicySet;
  /** SAE id → latent labels, attached to alerts. */
  labels?: ReadonlyMap<string, ReadonlyMap<number, string>>;
  /** Each steer action of the policies, resolved (see {@linkcode Generation.steerOps}). */
  steerOps?: ReadonlyMap<SteerAction, SteerOp>;
  /** See {@linkcode Generation.evidenceEncoders}. */
  evidenceEncoders?: ReadonlyMap<string, Encoder>;
  /**
   * Evidence on alerts: the flagged tokens encoded in full, their
   * `topLatents` strongest latents attached; recent activations kept in a
   * ring of `ringTokens` tokens (default off).
   */
  evidence?: { topLatents: number; ringTokens: number };
  /** Micro-batching limits (`adaptive`: wait for a fuller batch only while the load can fill it). */
  batching: BatchLimits;
  /** Where alerts go (JetStream with its spool, syslog, webhooks, ...); each has its own bounded queue. */
  sinks: readonly AlertSink[];
  /**
   * The sink that makes alerts durable (JetStream with its spool; may also
   * be in `sinks`, it is not handed an alert twice). Each evaluated batch's
   * alerts go to it first, in one write; an alert reaches the other sinks,
   * `onAlert` and the `latentwatch.alerts` counter only once it is durable
   * (see docs/alert-delivery.md). Without one, alerts go to every sink at once.
   */
  durable?: DurableSink;
  /**
   * Where each request's last durably processed Lw-Seq is kept across a
   * restart, so frames that arrived while the sidecar was down are counted
   * as lost (`latentwatch.frames.lost`, `frame.lost ... after_restart=true`).
   */
  checkpoints?: SeqCheckpoints;
  bus: Bus;
  telemetry: Telemetry;
  log: Logger;
  /**
   * Steering (`docs/steering.md`): send the commands rules ask for to the
   * taps and answer gated frames (default enabled, commands live 5 s).
   */
  steering?: { enabled: boolean; ttlMs: number };
  /** Per-request state is evicted when a request sends nothing for this long (default 10 min). */
  requestTtlMs?: number;
  /** At most this many requests have live state (default 100 000); the oldest is evicted past it. */
  maxRequests?: number;
  /** Called with every message as received, before decoding (trace recording). */
  onMessage?: (msg: BusMessage) => void;
  /** Called for every alert raised (before it is published). */
  onAlert?: (alert: Alert) => void;
  /** Called after each batch with the frames and their per-token latents (for displays). */
  onEncoded?: (frames: readonly Frame[], latents: ReadonlyMap<string, SparseLatents[]>) => void;
}

interface RequestState {
  lastSeen: number;
  tokens: number;
  /** The Lw-Seq expected next from the tap. */
  nextSeq: number;
}

/**
 * A running monitor.
 *
 * @example
 * ```ts
 * const p = new Pipeline({ monitor: "demo", model, hook, subject, dIn, encoders, policies, batching, alerts, bus, telemetry, log });
 * p.start();
 * // ... frames flow ...
 * await p.stop();
 * ```
 */
export class Pipeline {
  readonly #o: PipelineOptions;
  readonly #batcher: MicroBatcher<Frame>;
  readonly sinks: readonly AlertSink[];
  #sub: BusSubscription | null = null;
  #ackSub: BusSubscription | null = null;
  /** Recent activations, for evidence (null when evidence is off). */
  #ring: ActivationRing | null = null;
  /** Per request, the steer actions already sent (`rule#index`), so each is sent once. */
  readonly #steered = new Map<string, Set<string>>();
  /** Where a frame came from: its partition, and the reply subject of a gated frame. */
  readonly #origin = new WeakMap<Frame, { partition: number; reply?: string }>();
  #worker: Promise<void> | null = null;
  #requests = new Map<string, RequestState>();
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Reused across batches to gather their frames' rows. */
  readonly #scratch: Scratch = { data: new Float32Array(0) };
  #generation: Generation;
  /** Per-request policy state (windows, suppression) lives here, across reloads. */
  readonly #engine: PolicyEngine;
  /** Batches in flight per generation, so a swapped-out one is released only when unused. */
  #inUse = new Map<Generation, number>();
  #released = new Map<Generation, () => void>();

  constructor(opts: PipelineOptions) {
    this.#o = opts;
    this.#generation = {
      encoders: opts.encoders,
      policies: opts.policies,
      labels: opts.labels,
      steerOps: opts.steerOps,
      evidenceEncoders: opts.evidenceEncoders,
    };
    if (opts.evidence && opts.evidence.topLatents > 0) {
      this.#ring = new ActivationRing(opts.evidence.ringTokens, opts.dIn);
    }
    this.#engine = new PolicyEngine(opts.policies, {
      maxRequests: opts.maxRequests,
      ttlMs: opts.requestTtlMs,
    });
    this.#batcher = new MicroBatcher<Frame>(opts.batching);
    this.sinks = opts.sinks;
  }

  /** Subscribe to the tap subject and start the encode worker. */
  start(): void {
    if (this.#sub) return;
    this.#sub = this.#o.bus.subscribe(
      this.#o.subject,
      (msg) => this.#onMessage(msg),
      (err) => {
        this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "subscription" });
        this.#o.log.error("subscription.error", { subject: this.#o.subject, error: err.message });
      },
    );
    if (this.#steering.enabled) {
      const subject = steerAckSubject(this.#o.model, this.#o.hook);
      this.#ackSub = this.#o.bus.subscribe(subject, (msg) => this.#onAck(msg), (err) => {
        this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "subscription" });
        this.#o.log.error("subscription.error", { subject, error: err.message });
      });
    }
    this.#running = true;
    this.#worker = this.#run();
    const ttl = this.#o.requestTtlMs ?? 600_000;
    this.#sweeper = setInterval(() => this.#sweep(ttl), Math.min(ttl, 10_000));
  }

  /** The generation new batches use. */
  get generation(): Generation {
    return this.#generation;
  }

  /**
   * Make `next` the generation for every batch that starts from now on. The
   * batch being encoded (if any) finishes with the old one; the returned
   * promise resolves once no batch uses the old generation any more, when its
   * encoders may be closed. No frame is dropped or evaluated twice: the queue
   * is untouched, and each batch is taken from it exactly once.
   *
   * @example
   * ```ts
   * const old = await pipeline.swap({ encoders, policies });
   * for (const e of old.encoders.values()) if (!encoders.has(e)) await e.close();
   * ```
   */
  swap(next: Generation): Promise<Generation> {
    const old = this.#generation;
    this.#generation = next;
    if (!this.#inUse.get(old)) return Promise.resolve(old);
    return new Promise((resolve) => this.#released.set(old, () => resolve(old)));
  }

  /**
   * True while the tap subscription can deliver (started, not stopped, and
   * not closed by the server; see `BusSubscription.active`).
   */
  get subscribed(): boolean {
    return this.#sub?.active ?? false;
  }

  /** Requests with live state. */
  get activeRequests(): number {
    return this.#requests.size;
  }

  /** Tokens waiting to be encoded. */
  get queuedTokens(): number {
    return this.#batcher.queuedTokens;
  }

  /**
   * Stop taking frames, finish what is queued, and wait (up to `timeoutMs`)
   * for the sinks to deliver the alerts (JetStream spools what it cannot send).
   * Resolves with the number of alerts lost (each counted and logged).
   */
  async stop(timeoutMs = 10_000): Promise<number> {
    this.#sub?.unsubscribe();
    this.#sub = null;
    this.#ackSub?.unsubscribe();
    this.#ackSub = null;
    clearInterval(this.#sweeper);
    this.#stopping = true;
    this.#batcher.close();
    await this.#worker;
    // every sink drains in parallel, each within the deadline; what one could not
    // deliver (or spool) is counted and logged by that sink
    const lost = await Promise.all(this.sinks.map((sink) => sink.drain(timeoutMs)));
    for (const sink of this.sinks) await sink.close();
    return lost.reduce((a, b) => a + b, 0);
  }

  /** Resolve once every frame accepted so far is encoded and its alerts acknowledged. */
  async idle(): Promise<void> {
    while (this.#processed < this.#accepted) {
      await new Promise((r) => setTimeout(r, 2));
    }
    // bounded: a sink that cannot deliver (broker down) spools or drops, and
    // idle() is for tests and the demo, which must not wait forever
    const deadline = Date.now() + 10_000;
    while (this.sinks.some((sink) => sink.stats.queued > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Frames accepted into the queue, and frames whose processing finished (or failed). */
  #accepted = 0;
  #processed = 0;

  /**
   * One tap message. Never throws: whatever the message carries, it is
   * accepted, rejected (counted by reason) or dropped (counted), so nothing
   * reaches the bus client's read loop.
   */
  #onMessage(msg: BusMessage): void {
    try {
      this.#intake(msg);
    } catch (err) {
      this.#o.telemetry.add("latentwatch.frames.dropped", 1, { reason: "internal_error" });
      this.#o.log.error("frame.dropped", {
        reason: "internal_error",
        subject: msg.subject,
        request: requestOf(msg),
        error: (err as Error)?.message ?? String(err),
      });
    }
  }

  #intake(msg: BusMessage): void {
    const t = this.#o.telemetry;
    t.add("latentwatch.frames.received");
    this.#o.onMessage?.(msg);
    let frame: Frame;
    try {
      frame = decodeMonitorFrame(msg, this.#o);
    } catch (err) {
      const e = err instanceof FrameError ? err : null;
      const reason = rejectionReason(e?.field);
      t.add("latentwatch.frames.rejected", 1, { reason });
      const request = e?.requestId ?? requestOf(msg);
      this.#o.log.warn("frame.rejected", {
        subject: msg.subject,
        request,
        reason,
        error: (err as Error).message,
      });
      if (msg.reply) {
        const seq = Number(msg.headers["Lw-Seq"]);
        this.#reply(msg.reply, {
          requestId: request,
          seq: Number.isSafeInteger(seq) && seq >= 0 ? seq : 0,
          verdict: "error",
          commands: [],
          reason: `frame rejected: ${(err as Error).message}`,
        });
      }
      return;
    }
    const partition = Number(msg.subject.slice(msg.subject.lastIndexOf(".") + 1));
    this.#origin.set(frame, {
      partition: Number.isSafeInteger(partition) && partition >= 0 ? partition : 0,
      ...(msg.reply ? { reply: msg.reply } : {}),
    });
    if (!this.#track(frame, msg.subject)) {
      if (msg.reply) this.#replyError(frame, "frame dropped: repeated seq");
      return;
    }
    if (!this.#batcher.offer(frame, msg.reply !== undefined)) {
      const reason = frame.tokens > this.#batcher.limits.maxQueueTokens
        ? "frame_too_large"
        : "queue_full";
      t.add("latentwatch.frames.dropped", 1, { reason });
      t.add("latentwatch.tokens.dropped", frame.tokens, { reason });
      this.#o.log.error("frame.dropped", {
        reason,
        subject: msg.subject,
        request: frame.requestId,
        position: frame.position,
        tokens: frame.tokens,
        queued_tokens: this.#batcher.queuedTokens,
      });
      if (msg.reply) this.#replyError(frame, `frame dropped: ${reason}`);
      return;
    }
    this.#accepted++;
    t.set("latentwatch.queue.depth", this.#batcher.queuedTokens);
  }

  /**
   * The encode worker: one batch at a time until the queue is closed. A
   * batch that throws is counted (`latentwatch.pipeline.errors{stage=batch}`)
   * and logged, and the loop goes on with the next one.
   */
  async #run(): Promise<void> {
    try {
      for (;;) {
        const batch = await this.#batcher.next();
        if (batch === null) return;
        try {
          await this.#process(batch);
        } catch (err) {
          this.#pipelineError("batch", err, {
            frames: batch.length,
            requests: [...new Set(batch.map((f) => f.requestId))].slice(0, 16).join(","),
          });
        } finally {
          this.#processed += batch.length;
          this.#o.telemetry.set("latentwatch.queue.depth", this.#batcher.queuedTokens);
        }
      }
    } catch (err) {
      // the queue itself failed: nothing is processed any more, readiness says so
      this.#loopError = err as Error;
      this.#pipelineError("loop", err);
    } finally {
      this.#running = false;
    }
  }

  #running = false;
  #stopping = false;
  #loopError: Error | null = null;

  /**
   * False once the processing loop has ended although the pipeline was not
   * stopped (and before start): frames would be queued and never processed.
   * Readiness reports it.
   */
  get processing(): boolean {
    return this.#running || this.#stopping;
  }

  /** Why the processing loop ended, when it ended on an error. */
  get processingError(): Error | null {
    return this.#loopError;
  }

  /** Count and log an error caught in the pipeline; processing goes on. */
  #pipelineError(stage: string, err: unknown, fields: Record<string, string | number> = {}): void {
    this.#o.telemetry.add("latentwatch.pipeline.errors", 1, { stage });
    this.#o.log.error("pipeline.error", {
      stage,
      ...fields,
      error: (err as Error)?.message ?? String(err),
    });
  }

  async #process(frames: Frame[]): Promise<void> {
    const gen = this.#generation;
    this.#inUse.set(gen, (this.#inUse.get(gen) ?? 0) + 1);
    try {
      await this.#processWith(gen, frames);
    } finally {
      const left = this.#inUse.get(gen)! - 1;
      if (left > 0) this.#inUse.set(gen, left);
      else {
        this.#inUse.delete(gen);
        this.#released.get(gen)?.();
        this.#released.delete(gen);
      }
    }
  }

  async #processWith(gen: Generation, frames: Frame[]): Promise<void> {
    const { dIn, telemetry: t } = this.#o;
    const n = frames.reduce((s, f) => s + f.tokens, 0);
    let latents: ReadonlyMap<string, SparseLatents[]> = new Map();
    if (n > 0) {
      try {
        // a frame may hold more tokens than a batch: encode at most maxBatchTokens rows per call
        latents = await encodeFrames(gen.encoders, frames, {
          dIn,
          maxBatchTokens: this.#o.batching.maxBatchTokens,
          scratch: this.#scratch,
          onEncoded: (sae, tokens) => t.add("latentwatch.tokens.encoded", tokens, { sae }),
        });
        t.add("latentwatch.batches");
      } catch (err) {
        t.add("latentwatch.encode.errors");
        t.add("latentwatch.frames.dropped", frames.length, { reason: "encode_error" });
        t.add("latentwatch.tokens.dropped", n, { reason: "encode_error" });
        this.#o.log.error("batch.encode_failed", {
          frames: frames.length,
          tokens: n,
          requests: [...new Set(frames.map((f) => f.requestId))].join(","),
          error: (err as Error).message,
        });
        // the requests that ended in this batch still end: their state goes now, not at the TTL
        for (const f of frames) {
          if (f.endOfRequest) this.#engine.endRequest(f.requestId);
          this.#replyError(f, `encode failed: ${(err as Error).message}`);
        }
        this.#checkpoint(this.#checkpointOf(frames)); // counted as dropped: not lost at a restart
        return;
      }
    }
    if (this.#ring) {
      for (const f of frames) {
        if (f.tokens > 0) this.#ring.putRows(f.requestId, f.position, f.tokens, f.data);
      }
    }
    const alerts: Alert[] = [];
    let row = 0;
    for (const frame of frames) {
      try {
        if (frame.tokens > 0) this.#evaluate(gen, frame, row, latents, alerts);
        else this.#replyContinue(frame); // a gated end marker or empty frame: nothing to steer
      } catch (err) {
        // one frame's failure must not cost the batch's other frames their evaluation
        this.#o.telemetry.add("latentwatch.evaluate.errors");
        this.#o.log.error("frame.evaluate_failed", {
          request: frame.requestId,
          position: frame.position,
          error: (err as Error).message,
        });
        this.#replyError(frame, `evaluation failed: ${(err as Error).message}`);
      }
      row += frame.tokens;
      // the end marker is processed after the request's tokens: its windows can go
      if (frame.endOfRequest) {
        this.#engine.endRequest(frame.requestId);
        this.#steered.delete(frame.requestId);
      }
    }
    if (alerts.length > 0) await this.#attachEvidence(gen, alerts);
    // write-ahead, then the checkpoint, then the other sinks: the two writes
    // follow each other in one tick, so a restart resumes each request's seq
    // right after the last batch whose alerts are durable, and counts what a
    // crash cut off after it as lost (the gap its next frame shows)
    const checkpoint = this.#checkpointOf(frames);
    const results = alerts.length > 0 ? this.#persist(alerts) : null;
    this.#checkpoint(checkpoint);
    if (results) this.#releaseAll(alerts, results);
    this.#reportEngine();
    this.#o.onEncoded?.(frames, latents);
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
          this.#pipelineError("release", err, { alert: alert.id })
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
      this.#pipelineError("on_alert", err, { alert: alert.id });
    }
    for (const sink of this.sinks) {
      if (sink === this.#o.durable) continue;
      try {
        sink.submit(alert);
      } catch (err) {
        this.#pipelineError("sink_submit", err, { alert: alert.id, sink: sink.name });
      }
    }
  }

  /** The seq each request of `frames` resumes from after a restart, and the requests they end. */
  #checkpointOf(frames: readonly Frame[]): { next: Map<string, number>; ended: string[] } {
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

  /** Record a batch's checkpoint (see {@linkcode SeqCheckpoints}). */
  #checkpoint({ next, ended }: { next: Map<string, number>; ended: string[] }): void {
    const cp = this.#o.checkpoints;
    if (!cp) return;
    try {
      cp.record(next, ended);
    } catch (err) {
      this.#o.telemetry.add("latentwatch.checkpoint.errors");
      this.#o.log.error("checkpoint.write_failed", {
        path: cp.path,
        error: (err as Error).message,
        note: "after a restart, frames lost while down may be miscounted",
      });
    }
  }

  /** Record frames `[from, to)` of a request as counted lost (see {@linkcode SeqCheckpoints.lost}). */
  #checkpointLost(requestId: string, from: number, to: number): void {
    const cp = this.#o.checkpoints;
    if (!cp) return;
    try {
      cp.lost(requestId, from, to);
    } catch (err) {
      this.#o.telemetry.add("latentwatch.checkpoint.errors");
      this.#o.log.error("checkpoint.write_failed", {
        path: cp.path,
        error: (err as Error).message,
        note: "after a restart, frames lost while down may be miscounted",
      });
    }
  }

  /**
   * Encode the tokens each alert flags in full (from the activation ring)
   * and attach their strongest latents. Evidence is best effort: tokens no
   * longer in the ring, a probe signal, or an encode error leave the alert
   * as it is (counted), never hold it back.
   */
  async #attachEvidence(gen: Generation, alerts: Alert[]): Promise<void> {
    const ring = this.#ring;
    const top = this.#o.evidence?.topLatents ?? 0;
    if (!ring || top === 0) return;
    const t = this.#o.telemetry;
    const perSae = new Map<string, { evidence: AlertEvidence; row: Float32Array }[]>();
    for (const alert of alerts) {
      if (alert.latent.signal === "probe") continue;
      const sae = alert.latent.sae;
      if (!gen.evidenceEncoders?.has(sae)) continue;
      for (const evidence of alert.evidence.slice(0, MAX_EVIDENCE_TOKENS)) {
        const row = ring.get(alert.requestId, evidence.position);
        if (!row) {
          t.add("latentwatch.evidence.missing", 1, { reason: "not_in_ring" });
          continue;
        }
        let list = perSae.get(sae);
        if (!list) perSae.set(sae, list = []);
        list.push({ evidence, row });
      }
    }
    for (const [sae, items] of perSae) {
      const encoder = gen.evidenceEncoders!.get(sae)!;
      const x = new Float32Array(items.length * this.#o.dIn);
      items.forEach((it, i) => x.set(it.row, i * this.#o.dIn));
      try {
        const rows = await encoder.encode(x, items.length);
        const labels = gen.labels?.get(sae);
        items.forEach((it, i) => {
          it.evidence.topLatents = topLatents(rows[i], top, labels);
        });
        t.add("latentwatch.evidence.tokens", items.length, { sae });
      } catch (err) {
        t.add("latentwatch.evidence.missing", items.length, { reason: "encode_error" });
        this.#o.log.error("evidence.encode_failed", {
          sae,
          tokens: items.length,
          error: (err as Error).message,
        });
      }
    }
  }

  #evaluate(
    gen: Generation,
    frame: Frame,
    firstRow: number,
    latents: ReadonlyMap<string, SparseLatents[]>,
    alerts: Alert[],
  ): void {
    // the engine evaluates with the set the batch was encoded for (a swap
    // between encode and evaluate must not pair new rules with old encoders)
    if (this.#engine.set !== gen.policies) this.#engine.swap(gen.policies);
    const firings = this.#engine.evaluate(tokenBatch(frame, firstRow, latents));
    const commands: SteerCommand[] = [];
    for (const firing of firings) {
      commands.push(...this.#raise(gen, frame, firstRow, latents, firing, alerts));
    }
    const origin = this.#origin.get(frame);
    if (origin?.reply) {
      // a gated frame: its commands go in the verdict, which the tap waits for
      this.#reply(origin.reply, {
        requestId: frame.requestId,
        seq: frame.seq,
        verdict: commands.some((c) => c.op.kind === "abort")
          ? "abort"
          : commands.length > 0
          ? "steer"
          : "continue",
        commands,
      });
      for (const c of commands) this.#countSent(c, "verdict");
      return;
    }
    if (commands.length === 0) return;
    const subject = steerSubject(frame.model, frame.hook, origin?.partition ?? 0);
    for (const c of commands) {
      try {
        this.#o.bus.publish(subject, encodeCommand(c));
        this.#countSent(c, "subject");
      } catch (err) {
        this.#o.telemetry.add("latentwatch.steer.errors", 1, { reason: "publish" });
        this.#o.log.error("steer.publish_failed", {
          subject,
          request: c.requestId,
          command: c.id,
          error: (err as Error).message,
        });
      }
    }
  }

  /** The steering settings in force. */
  get #steering(): { enabled: boolean; ttlMs: number } {
    return this.#o.steering ?? { enabled: true, ttlMs: 5000 };
  }

  #countSent(c: SteerCommand, route: "subject" | "verdict"): void {
    this.#o.telemetry.add("latentwatch.steer.sent", 1, { op: c.op.kind, route });
    this.#o.log.info("steer.sent", {
      request: c.requestId,
      command: c.id,
      op: c.op.kind,
      rule: c.rule,
      from_position: c.fromPosition,
      route,
    });
  }

  /** The steering commands of one firing (none when steering is off). */
  #commandsOf(gen: Generation, frame: Frame, firing: Firing, id: string): SteerCommand[] {
    if (firing.steer.length === 0) return [];
    if (!this.#steering.enabled) {
      this.#o.telemetry.add("latentwatch.steer.errors", firing.steer.length, {
        reason: "disabled",
      });
      return [];
    }
    const now = Date.now();
    const commands: SteerCommand[] = [];
    let sent = this.#steered.get(frame.requestId);
    if (!sent) {
      this.#steered.set(frame.requestId, sent = new Set());
      if (this.#steered.size > (this.#o.maxRequests ?? 100_000)) {
        this.#steered.delete(this.#steered.keys().next().value!);
      }
    }
    firing.steer.forEach((action: SteerAction, i) => {
      // a rule steers a request once: firing again (suppress none, token windows)
      // must not stack the same operation on the tap
      const key = `${firing.rule.id}#${i}`;
      if (sent.has(key)) {
        this.#o.telemetry.add("latentwatch.steer.repeats", 1, { rule: firing.rule.id });
        return;
      }
      sent.add(key);
      const op: SteerOp | undefined = gen.steerOps?.get(action);
      if (!op) {
        // resolved at start and reload; a generation built without them (tests) lands here
        this.#o.telemetry.add("latentwatch.steer.errors", 1, { reason: "unresolved" });
        this.#o.log.error("steer.unresolved", {
          request: frame.requestId,
          rule: firing.rule.id,
          action: JSON.stringify(action),
        });
        return;
      }
      commands.push({
        id: `${id}-s${i}`,
        requestId: frame.requestId,
        model: frame.model,
        hook: frame.hook,
        dModel: this.#o.dIn,
        // from the token after this frame: the next step the model takes
        fromPosition: frame.position + frame.tokens,
        untilPosition: null,
        issuedAtMs: now,
        expiresAtMs: now + this.#steering.ttlMs,
        monitor: this.#o.monitor,
        rule: firing.rule.id,
        ...(firing.alert ? { alertId: id } : {}),
        op,
      });
    });
    return commands;
  }

  /** Answer a gated frame with nothing to evaluate. */
  #replyContinue(frame: Frame): void {
    const reply = this.#origin.get(frame)?.reply;
    if (reply) {
      this.#reply(reply, {
        requestId: frame.requestId,
        seq: frame.seq,
        verdict: "continue",
        commands: [],
      });
    }
  }

  /** Answer a gated frame the pipeline could not evaluate. */
  #replyError(frame: Frame, reason: string): void {
    const reply = this.#origin.get(frame)?.reply;
    if (!reply) return;
    this.#reply(reply, {
      requestId: frame.requestId,
      seq: frame.seq,
      verdict: "error",
      commands: [],
      reason,
    });
  }

  #reply(subject: string, verdict: GateVerdict): void {
    try {
      this.#o.bus.publish(subject, encodeVerdict(verdict));
      this.#o.telemetry.add("latentwatch.gate.replies", 1, { verdict: verdict.verdict });
    } catch (err) {
      this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "gate_reply" });
      this.#o.log.error("gate.reply_failed", {
        subject,
        request: verdict.requestId,
        seq: verdict.seq,
        error: (err as Error).message,
      });
    }
  }

  #onAck(msg: BusMessage): void {
    const t = this.#o.telemetry;
    try {
      const ack = parseAck(msg.data);
      t.add("latentwatch.steer.acks", 1, { status: ack.status });
      const fields = {
        subject: msg.subject,
        request: ack.requestId,
        command: ack.id,
        status: ack.status,
        ...(ack.position !== undefined ? { position: ack.position } : {}),
        ...(ack.reason !== undefined ? { reason: ack.reason } : {}),
        ...(ack.tap !== undefined ? { tap: ack.tap } : {}),
      };
      if (ack.status === "applied") this.#o.log.info("steer.ack", fields);
      else this.#o.log.warn("steer.ack", fields);
    } catch (err) {
      t.add("latentwatch.steer.acks", 1, { status: "malformed" });
      this.#o.log.warn("steer.ack_malformed", {
        subject: msg.subject,
        error: (err as Error).message,
      });
    }
  }

  #raise(
    gen: Generation,
    frame: Frame,
    firstRow: number,
    latents: ReadonlyMap<string, SparseLatents[]>,
    firing: Firing,
    alerts: Alert[],
  ): SteerCommand[] {
    const { rule, signal } = firing;
    const def = rule.def;
    const rows = latents.get(signal.encoder);
    const evidence: AlertEvidence[] = firing.positions.map((position) => {
      const i = position - frame.position;
      return {
        position,
        value: rows ? valueAt(rows[firstRow + i], signal.index) : firing.value,
        ...(frame.tokenIds ? { tokenId: frame.tokenIds[i] } : {}),
        ...(frame.tokenText ? { text: frame.tokenText[i] } : {}),
      };
    });
    const start = firing.positions[0];
    const label = signal.label ?? gen.labels?.get(signal.encoder)?.get(signal.index);
    const threshold = thresholdOf(rule, signal.encoder, signal.index);
    if (firing.steer.length > 0) {
      this.#o.telemetry.add("latentwatch.steer.planned", firing.steer.length, { rule: rule.id });
    }
    const id = alertId(this.#o.monitor, frame.requestId, rule.id, start);
    const commands = this.#commandsOf(gen, frame, firing, id);
    if (!firing.alert) return commands;
    // every signal the rule reads, as it stood on the first firing token
    const row = firstRow + (start - frame.position);
    const readings: AlertLatentValue[] = [];
    const scores: AlertProbeScore[] = [];
    const seen = new Set<string>();
    for (const t of rule.tests) {
      const key = `${t.kind}:${t.encoder}:${t.index}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const value = valueAt(latents.get(t.encoder)?.[row] ?? EMPTY_ROW, t.index);
      const tLabel = t.label ?? gen.labels?.get(t.encoder)?.get(t.index);
      const tThreshold = thresholdOf(rule, t.encoder, t.index);
      const extra = {
        ...(tLabel !== undefined ? { label: tLabel } : {}),
        ...(tThreshold !== undefined ? { threshold: tThreshold } : {}),
      };
      if (t.kind === "probe") scores.push({ probe: t.encoder, index: t.index, value, ...extra });
      else readings.push({ sae: t.encoder, index: t.index, value, ...extra });
    }
    const trace = traceContext(frame.traceparent, frame.tracestate);
    const atlas = atlasOf(def.tags);
    const alert: Alert = {
      schema: "latentwatch.alert/v1",
      id,
      time: new Date().toISOString(),
      monitor: this.#o.monitor,
      policy: {
        id: rule.id,
        file: def.source.file,
        line: def.source.line,
        version: gen.policies.version,
      },
      severity: def.severity,
      title: def.title,
      ...(firing.description ? { description: firing.description } : {}),
      ...(def.tags.length > 0 ? { tags: def.tags } : {}),
      model: frame.model,
      hook: frame.hook,
      requestId: frame.requestId,
      ...(frame.tenant ? { tenant: frame.tenant } : {}),
      ...(frame.meta ? { meta: frame.meta } : {}),
      ...(frame.phase ? { phase: frame.phase } : {}),
      tokens: {
        start,
        end: firing.positions[firing.positions.length - 1] + 1,
        count: evidence.length,
      },
      latent: {
        sae: signal.encoder,
        index: signal.index,
        ...(threshold !== undefined ? { threshold } : {}),
        max: firing.value,
        ...(label !== undefined ? { label } : {}),
        ...(signal.kind === "probe" ? { signal: "probe" as const } : {}),
      },
      evidence,
      ...(readings.length > 0 ? { latents: readings } : {}),
      ...(scores.length > 0 ? { probes: scores } : {}),
      ...(atlas.length > 0 ? { atlas } : {}),
      ...(firing.steer.length > 0 ? { steer: [...firing.steer] } : {}),
      ...(frame.traceparent ? { traceparent: frame.traceparent } : {}),
      ...(trace ? { trace } : {}),
    };
    alerts.push(alert);
    return commands;
  }

  /**
   * Follow each request's Lw-Seq as frames arrive: gaps are frames lost
   * before reaching us; a seq already passed is a re-sent frame, dropped
   * (returns false).
   */
  #track(frame: Frame, subject: string): boolean {
    const t = this.#o.telemetry;
    let s = this.#requests.get(frame.requestId);
    let resumed: Resume | undefined;
    if (!s) {
      // a request the last run was in the middle of resumes from its
      // checkpoint: the frames since then never reached a durable state
      resumed = this.#o.checkpoints?.take(frame.requestId);
      s = { lastSeen: 0, tokens: 0, nextSeq: resumed?.next ?? 0 };
      this.#requests.set(frame.requestId, s);
      const max = this.#o.maxRequests ?? 100_000;
      if (this.#requests.size > max) {
        const [oldest] = this.#requests.keys();
        this.#requests.delete(oldest);
        t.add("latentwatch.requests.evicted", 1, { reason: "capacity" });
        this.#o.log.warn("request.evicted", {
          request: oldest,
          reason: "capacity",
          max_requests: max,
        });
      }
    } else {
      // keep Map order = least recently seen first, so capacity evicts the stalest
      this.#requests.delete(frame.requestId);
      this.#requests.set(frame.requestId, s);
    }
    if (frame.seq > s.nextSeq) {
      // after a restart, what the last run counted at intake is not counted again
      const lost = resumed ? uncountedBefore(resumed, frame.seq) : frame.seq - s.nextSeq;
      if (lost > 0) {
        t.add("latentwatch.frames.lost", lost);
        if (resumed) t.add("latentwatch.frames.lost_at_restart", lost);
        this.#o.log.warn("frame.lost", {
          subject,
          request: frame.requestId,
          expected_seq: s.nextSeq,
          found_seq: frame.seq,
          lost,
          ...(resumed ? { after_restart: true } : {}),
        });
      }
      // counted: a restart before these frames' successors are processed must
      // not count them again, nor skip the frames still queued before them
      this.#checkpointLost(frame.requestId, s.nextSeq, frame.seq);
    } else if (frame.seq < s.nextSeq) {
      // NATS keeps one publisher's order, so a seq already passed is a re-sent
      // frame: evaluating it again would count its tokens twice in the windows
      // and raise its alerts twice in sinks without dedup
      t.add("latentwatch.frames.out_of_order");
      t.add("latentwatch.frames.dropped", 1, { reason: "repeated_seq" });
      t.add("latentwatch.tokens.dropped", frame.tokens, { reason: "repeated_seq" });
      this.#o.log.warn("frame.out_of_order", {
        subject,
        request: frame.requestId,
        expected_seq: s.nextSeq,
        found_seq: frame.seq,
        action: "dropped",
      });
      s.lastSeen = Date.now();
      return false;
    }
    s.nextSeq = Math.max(s.nextSeq, frame.seq + 1);
    s.lastSeen = Date.now();
    s.tokens += frame.tokens;
    if (frame.endOfRequest) this.#requests.delete(frame.requestId);
    t.set("latentwatch.requests.active", this.#requests.size);
    return true;
  }

  #sweep(ttlMs: number): void {
    const cutoff = Date.now() - ttlMs;
    const expired: string[] = [];
    for (const [id, s] of this.#requests) {
      if (s.lastSeen < cutoff) {
        this.#requests.delete(id);
        this.#steered.delete(id);
        expired.push(id);
        this.#o.telemetry.add("latentwatch.requests.evicted", 1, { reason: "ttl" });
        this.#o.log.info("request.expired", { request: id, tokens: s.tokens });
      }
    }
    this.#o.telemetry.set("latentwatch.requests.active", this.#requests.size);
    if (expired.length > 0) {
      try {
        this.#o.checkpoints?.record(new Map(), expired);
      } catch { /* counted where batches write their checkpoints */ }
    }
    this.#engine.sweep();
    this.#reportEngine();
  }

  /** Mirror the policy engine's counters into telemetry. */
  #reportEngine(): void {
    const s = this.#engine.stats;
    const t = this.#o.telemetry;
    t.set("latentwatch.policy.requests", s.activeRequests);
    t.set("latentwatch.policy.suppressed", s.suppressed);
    t.set("latentwatch.policy.rate_limited", s.rateLimited);
    t.set("latentwatch.policy.excepted", s.excepted);
    t.set("latentwatch.policy.evicted", s.evicted.ttl, { reason: "ttl" });
    t.set("latentwatch.policy.evicted", s.evicted.capacity, { reason: "capacity" });
  }
}

/**
 * The counted reason of a rejection: the header at fault, `payload`, a
 * header-block problem, or `decode`. `Lw-Meta-<key>` headers count as one
 * reason, `Lw-Meta-*`, so senders cannot grow the label set.
 */
function rejectionReason(field: string | undefined): string {
  if (field === undefined) return "decode";
  if (field.toLowerCase().startsWith("lw-meta-")) return "Lw-Meta-*";
  return field;
}

/** The request id a message claims, bounded for a log line ("?" when none). */
function requestOf(msg: BusMessage): string {
  const id = msg.headers?.["Lw-Request-Id"];
  if (typeof id !== "string") return "?";
  return id.length > 256 ? `${id.slice(0, 256)}…` : id;
}

const EMPTY_ROW: SparseLatents = { indices: new Uint32Array(0), values: new Float32Array(0) };

/** Flagged tokens per alert encoded for evidence (the rest of a long span is left out). */
const MAX_EVIDENCE_TOKENS = 16;

/** The `n` strongest latents of one token, value descending, with labels. */
function topLatents(
  row: SparseLatents,
  n: number,
  labels?: ReadonlyMap<number, string>,
): AlertTopLatent[] {
  const order = [...row.values.keys()].sort((a, b) => row.values[b] - row.values[a]).slice(0, n);
  return order.map((k) => {
    const label = labels?.get(row.indices[k]);
    return {
      index: row.indices[k],
      value: row.values[k],
      ...(label !== undefined ? { label } : {}),
    };
  });
}

/** Value of latent `index` in one token's sparse latents (0 when inactive). */
function valueAt(row: SparseLatents, index: number): number {
  let lo = 0;
  let hi = row.indices.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (row.indices[mid] < index) lo = mid + 1;
    else hi = mid;
  }
  return row.indices[lo] === index ? row.values[lo] : 0;
}

/** Threshold of the first `above` test on (encoder, index) in a rule's condition. */
function thresholdOf(rule: CompiledRule, encoder: string, index: number): number | undefined {
  const walk = (c: CompiledRule["condition"]): number | undefined => {
    if (c.kind === "test") {
      const t = rule.tests[c.test];
      return t.encoder === encoder && t.index === index && c.op === "above"
        ? c.threshold
        : undefined;
    }
    if (c.kind === "not") return undefined;
    for (const sub of c.of) {
      const found = walk(sub);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return walk(rule.condition);
}
