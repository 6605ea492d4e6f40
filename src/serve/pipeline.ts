/**
 * The monitor pipeline in `serve`: the stages of `src/pipeline/` wired to
 * the bus, the sinks, the checkpoints and telemetry. Tap frames come in
 * from the bus → decode and sequence tracking (`pipeline/decode.ts`,
 * `pipeline/sequence.ts`) → bounded micro-batch across requests → encode
 * (`pipeline/encode.ts`) → evaluation (`pipeline/evaluate.ts`: alerts,
 * steering commands and gate verdicts as values) → evidence
 * (`pipeline/evidence.ts`) → write-ahead, checkpoint, then the other sinks.
 * Gate verdicts go back to the tap, commands to its steer subject. Every
 * rejected or dropped frame is counted and logged with its subject and
 * request id.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { type BatchLimits, MicroBatcher } from "../core/batcher.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import type { CompiledPolicySet } from "../core/policy/compile.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import { encodeCommand, encodeVerdict } from "../core/steer/encode.ts";
import { parseAck } from "../core/steer/parse.ts";
import type { GateVerdict, SteerCommand, SteerOp } from "../core/steer/protocol.ts";
import { steerAckSubject, steerSubject } from "../core/steer/subjects.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { Bus, BusMessage, BusSubscription } from "../bus/bus.ts";
import type { AlertSink, Durability, DurableSink } from "../sinks/sink.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import { decodeMonitorFrame, partitionOf, rejectionReason, requestOf } from "../pipeline/decode.ts";
import { encodeFrames, type Scratch } from "../pipeline/encode.ts";
import { Evaluator, type FrameOutcome } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import { SequenceTracker } from "../pipeline/sequence.ts";
import type { SteerSkip } from "../pipeline/steer_plan.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";

export type { Generation } from "../pipeline/generation.ts";

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
  /** Where a frame came from: its partition, and the reply subject of a gated frame. */
  readonly #origin = new WeakMap<Frame, { partition: number; reply?: string }>();
  #worker: Promise<void> | null = null;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  /** Reused across batches to gather their frames' rows. */
  readonly #scratch: Scratch = { data: new Float32Array(0) };
  #generation: Generation;
  /** Each request's Lw-Seq (intake). */
  readonly #seqs: SequenceTracker;
  /** Per-request policy and steering state lives here, across reloads. */
  readonly #evaluator: Evaluator;
  /** Recent activations and the evidence attached to alerts. */
  readonly #evidence: Evidence;
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
    this.#evidence = new Evidence({
      topLatents: opts.evidence?.topLatents ?? 0,
      ringTokens: opts.evidence?.ringTokens ?? 0,
      dIn: opts.dIn,
    });
    const checkpoints = opts.checkpoints;
    this.#seqs = new SequenceTracker({
      maxRequests: opts.maxRequests,
      ...(checkpoints ? { resume: (id: string) => checkpoints.take(id) } : {}),
    });
    this.#evaluator = new Evaluator(opts.policies, {
      monitor: opts.monitor,
      dIn: opts.dIn,
      steering: this.#steering,
      maxRequests: opts.maxRequests,
      requestTtlMs: opts.requestTtlMs,
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
    return this.#seqs.size;
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
    this.#origin.set(frame, {
      partition: partitionOf(msg.subject),
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
   * Follow the frame's Lw-Seq ({@linkcode SequenceTracker}), counting and
   * logging what it finds: gaps are frames lost before reaching us; a seq
   * already passed is a re-sent frame, dropped (returns false).
   */
  #track(frame: Frame, subject: string): boolean {
    const t = this.#o.telemetry;
    const step = this.#seqs.track(frame, Date.now());
    if (step.evicted !== undefined) {
      t.add("latentwatch.requests.evicted", 1, { reason: "capacity" });
      this.#o.log.warn("request.evicted", {
        request: step.evicted,
        reason: "capacity",
        max_requests: this.#seqs.maxRequests,
      });
    }
    if (!step.accepted) {
      t.add("latentwatch.frames.out_of_order");
      t.add("latentwatch.frames.dropped", 1, { reason: "repeated_seq" });
      t.add("latentwatch.tokens.dropped", frame.tokens, { reason: "repeated_seq" });
      this.#o.log.warn("frame.out_of_order", {
        subject,
        request: frame.requestId,
        expected_seq: step.expected,
        found_seq: frame.seq,
        action: "dropped",
      });
      return false;
    }
    if (frame.seq > step.expected) {
      if (step.lost > 0) {
        t.add("latentwatch.frames.lost", step.lost);
        if (step.resumed) t.add("latentwatch.frames.lost_at_restart", step.lost);
        this.#o.log.warn("frame.lost", {
          subject,
          request: frame.requestId,
          expected_seq: step.expected,
          found_seq: frame.seq,
          lost: step.lost,
          ...(step.resumed ? { after_restart: true } : {}),
        });
      }
      // counted: a restart before these frames' successors are processed must
      // not count them again, nor skip the frames still queued before them
      this.#checkpointLost(frame.requestId, step.expected, frame.seq);
    }
    t.set("latentwatch.requests.active", this.#seqs.size);
    return true;
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
          if (f.endOfRequest) this.#evaluator.endRequest(f.requestId);
          this.#replyError(f, `encode failed: ${(err as Error).message}`);
        }
        this.#checkpoint(this.#checkpointOf(frames)); // counted as dropped: not lost at a restart
        return;
      }
    }
    this.#evidence.remember(frames);
    const outcome = this.#evaluator.evaluateBatch(gen, frames, latents);
    outcome.frames.forEach((o, i) => {
      const frame = frames[i];
      if ("error" in o) {
        // one frame's failure must not cost the batch's other frames their evaluation
        t.add("latentwatch.evaluate.errors");
        this.#o.log.error("frame.evaluate_failed", {
          request: frame.requestId,
          position: frame.position,
          error: o.error.message,
        });
        this.#replyError(frame, `evaluation failed: ${o.error.message}`);
      } else this.#act(frame, o);
    });
    const alerts = outcome.alerts;
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

  /**
   * Carry out what one frame's evaluation asks for: count the steering
   * planned and skipped, answer a gated frame with its verdict (its commands
   * inside), or publish the commands on the tap's steer subject.
   */
  #act(frame: Frame, o: FrameOutcome): void {
    for (const f of o.firings) {
      if (f.steer.length > 0) {
        this.#o.telemetry.add("latentwatch.steer.planned", f.steer.length, { rule: f.rule.id });
      }
    }
    for (const s of o.skipped) this.#countSkipped(s);
    const origin = this.#origin.get(frame);
    if (origin?.reply) {
      // a gated frame: its commands go in the verdict, which the tap waits for
      this.#reply(origin.reply, {
        requestId: frame.requestId,
        seq: frame.seq,
        verdict: o.verdict,
        commands: o.commands as SteerCommand[],
      });
      for (const c of o.commands) this.#countSent(c, "verdict");
      return;
    }
    if (o.commands.length === 0) return;
    const subject = steerSubject(frame.model, frame.hook, origin?.partition ?? 0);
    for (const c of o.commands) {
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

  #countSkipped(s: SteerSkip): void {
    const t = this.#o.telemetry;
    if (s.reason === "disabled") {
      t.add("latentwatch.steer.errors", s.actions, { reason: "disabled" });
    } else if (s.reason === "repeat") t.add("latentwatch.steer.repeats", 1, { rule: s.rule });
    else {
      t.add("latentwatch.steer.errors", 1, { reason: "unresolved" });
      this.#o.log.error("steer.unresolved", {
        request: s.requestId,
        rule: s.rule,
        action: JSON.stringify(s.action),
      });
    }
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
      this.#checkpointFailed(cp, err);
    }
  }

  /** Record frames `[from, to)` of a request as counted lost (see {@linkcode SeqCheckpoints.lost}). */
  #checkpointLost(requestId: string, from: number, to: number): void {
    const cp = this.#o.checkpoints;
    if (!cp) return;
    try {
      cp.lost(requestId, from, to);
    } catch (err) {
      this.#checkpointFailed(cp, err);
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

  /**
   * Attach evidence to a batch's alerts ({@linkcode Evidence.attach}) and
   * count what it did: best effort, an alert without evidence is never held
   * back.
   */
  async #attachEvidence(gen: Generation, alerts: Alert[]): Promise<void> {
    if (!this.#evidence.enabled) return;
    const t = this.#o.telemetry;
    const report = await this.#evidence.attach(alerts, {
      encoders: gen.evidenceEncoders,
      labels: gen.labels,
    });
    if (report.notInRing > 0) {
      t.add("latentwatch.evidence.missing", report.notInRing, { reason: "not_in_ring" });
    }
    for (const [sae, tokens] of report.tokens) {
      t.add("latentwatch.evidence.tokens", tokens, { sae });
    }
    for (const f of report.failures) {
      t.add("latentwatch.evidence.missing", f.tokens, { reason: "encode_error" });
      this.#o.log.error("evidence.encode_failed", {
        sae: f.sae,
        tokens: f.tokens,
        error: f.error.message,
      });
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

  #sweep(ttlMs: number): void {
    const expired = this.#seqs.sweep(Date.now() - ttlMs);
    for (const { requestId, tokens } of expired) {
      this.#evaluator.expire(requestId);
      this.#o.telemetry.add("latentwatch.requests.evicted", 1, { reason: "ttl" });
      this.#o.log.info("request.expired", { request: requestId, tokens });
    }
    this.#o.telemetry.set("latentwatch.requests.active", this.#seqs.size);
    if (expired.length > 0) {
      try {
        this.#o.checkpoints?.record(new Map(), expired.map((e) => e.requestId));
      } catch { /* counted where batches write their checkpoints */ }
    }
    this.#evaluator.sweep();
    this.#reportEngine();
  }

  /** Mirror the policy engine's counters into telemetry. */
  #reportEngine(): void {
    const s = this.#evaluator.stats;
    const t = this.#o.telemetry;
    t.set("latentwatch.policy.requests", s.activeRequests);
    t.set("latentwatch.policy.suppressed", s.suppressed);
    t.set("latentwatch.policy.rate_limited", s.rateLimited);
    t.set("latentwatch.policy.excepted", s.excepted);
    t.set("latentwatch.policy.evicted", s.evicted.ttl, { reason: "ttl" });
    t.set("latentwatch.policy.evicted", s.evicted.capacity, { reason: "capacity" });
  }
}
