/**
 * The monitor pipeline in `serve`: the stages of `src/pipeline/` wired to
 * the bus, the sinks, the checkpoints and telemetry. Tap frames come in
 * through {@linkcode Intake} (`intake.ts`: decode and sequence tracking) →
 * bounded micro-batch across requests → the batch loop here: encode
 * (`pipeline/encode.ts`) → evaluation (`pipeline/evaluate.ts`: alerts,
 * steering commands and gate verdicts as values) → evidence
 * (`pipeline/evidence.ts`) → {@linkcode AlertDelivery} (`delivery.ts`:
 * write-ahead, checkpoint, then the other sinks). Gate verdicts and commands
 * go back to the taps through {@linkcode TapChannel} (`tap_channel.ts`). The
 * loop holds each batch's {@linkcode Generation}, so a reload releases the
 * old one only once no batch uses it.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { type BatchLimits, MicroBatcher } from "../core/batcher.ts";
import type { Frame } from "../core/frame/format.ts";
import type { CompiledPolicySet } from "../core/policy/compile.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import type { SteerOp } from "../core/steer/protocol.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { Bus, BusMessage, BusSubscription } from "../bus/bus.ts";
import type { AlertSink, DurableSink } from "../sinks/sink.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import { encodeFrames, type Scratch } from "../pipeline/encode.ts";
import { Evaluator } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import { SequenceTracker } from "../pipeline/sequence.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import { AlertDelivery, checkpointOf } from "./delivery.ts";
import { Intake } from "./intake.ts";
import { TapChannel } from "./tap_channel.ts";

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
 * declare const options: PipelineOptions;
 * const p = new Pipeline(options);
 * p.start();
 * // ... frames flow ...
 * await p.idle();
 * const lost = await p.stop();
 * ```
 */
export class Pipeline {
  readonly #o: PipelineOptions;
  readonly #batcher: MicroBatcher<Frame>;
  readonly sinks: readonly AlertSink[];
  #sub: BusSubscription | null = null;
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
  readonly #intake: Intake;
  readonly #delivery: AlertDelivery;
  readonly #taps: TapChannel;
  /** Batches in flight per generation, so a swapped-out one is released only when unused. */
  #inUse = new Map<Generation, number>();
  #released = new Map<Generation, () => void>();
  /** Frames whose processing finished (or failed). */
  #processed = 0;
  #running = false;
  #stopping = false;
  #loopError: Error | null = null;

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
    const { bus, telemetry, log } = opts;
    this.#taps = new TapChannel({ model: opts.model, hook: opts.hook, bus, telemetry, log });
    this.#delivery = new AlertDelivery({
      sinks: opts.sinks,
      durable: opts.durable,
      checkpoints,
      telemetry,
      log,
      onAlert: opts.onAlert,
      onError: (stage, err, fields) => this.#pipelineError(stage, err, fields),
    });
    this.#intake = new Intake({
      expect: { model: opts.model, hook: opts.hook, dIn: opts.dIn },
      batcher: this.#batcher,
      seqs: this.#seqs,
      taps: this.#taps,
      onLost: (id, from, to) => this.#delivery.lost(id, from, to),
      telemetry,
      log,
      onMessage: opts.onMessage,
    });
  }

  /** Subscribe to the tap subject and start the encode worker. */
  start(): void {
    if (this.#sub) return;
    this.#sub = this.#o.bus.subscribe(
      this.#o.subject,
      (msg) => this.#intake.receive(msg),
      (err) => {
        this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "subscription" });
        this.#o.log.error("subscription.error", { subject: this.#o.subject, error: err.message });
      },
    );
    if (this.#steering.enabled) this.#taps.subscribeAcks();
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
   * declare const pipeline: Pipeline;
   * declare const next: Generation;
   * const old = await pipeline.swap(next);
   * for (const [id, e] of old.encoders) if (next.encoders.get(id) !== e) await e.close();
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
    this.#taps.close();
    clearInterval(this.#sweeper);
    this.#stopping = true;
    this.#batcher.close();
    await this.#worker;
    // every sink drains in parallel, each within the deadline; what one could not
    // deliver (or spool) is counted and logged by that sink
    return await this.#delivery.drain(timeoutMs);
  }

  /** Resolve once every frame accepted so far is encoded and its alerts acknowledged. */
  async idle(): Promise<void> {
    while (this.#processed < this.#intake.accepted) {
      await new Promise((r) => setTimeout(r, 2));
    }
    // bounded: a sink that cannot deliver (broker down) spools or drops, and
    // idle() is for tests and the demo, which must not wait forever
    const deadline = Date.now() + 10_000;
    while (this.#delivery.busy && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

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

  /** Count and log an error caught in the pipeline; processing goes on. */
  #pipelineError(stage: string, err: unknown, fields: Record<string, string | number> = {}): void {
    this.#o.telemetry.add("latentwatch.pipeline.errors", 1, { stage });
    this.#o.log.error("pipeline.error", {
      stage,
      ...fields,
      error: (err as Error)?.message ?? String(err),
    });
  }

  /** Process a batch with the generation in force, holding it until the batch is done. */
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
        this.#encodeFailed(frames, n, err as Error);
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
        this.#taps.replyError(frame, `evaluation failed: ${o.error.message}`);
      } else this.#taps.act(frame, o);
    });
    const alerts = outcome.alerts;
    if (alerts.length > 0) await this.#attachEvidence(gen, alerts);
    this.#delivery.deliver(alerts, frames);
    this.#reportEngine();
    this.#o.onEncoded?.(frames, latents);
  }

  /** A batch that could not be encoded: its frames are counted as dropped, gated ones answered. */
  #encodeFailed(frames: Frame[], tokens: number, err: Error): void {
    const t = this.#o.telemetry;
    t.add("latentwatch.encode.errors");
    t.add("latentwatch.frames.dropped", frames.length, { reason: "encode_error" });
    t.add("latentwatch.tokens.dropped", tokens, { reason: "encode_error" });
    this.#o.log.error("batch.encode_failed", {
      frames: frames.length,
      tokens,
      requests: [...new Set(frames.map((f) => f.requestId))].join(","),
      error: err.message,
    });
    // the requests that ended in this batch still end: their state goes now, not at the TTL
    for (const f of frames) {
      if (f.endOfRequest) this.#evaluator.endRequest(f.requestId);
      this.#taps.replyError(f, `encode failed: ${err.message}`);
    }
    this.#delivery.checkpoint(checkpointOf(frames)); // counted as dropped: not lost at a restart
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

  /** Forget requests idle for `ttlMs`, in the sequence tracker, the evaluator and the checkpoints. */
  #sweep(ttlMs: number): void {
    const expired = this.#seqs.sweep(Date.now() - ttlMs);
    for (const { requestId, tokens } of expired) {
      this.#evaluator.expire(requestId);
      this.#o.telemetry.add("latentwatch.requests.evicted", 1, { reason: "ttl" });
      this.#o.log.info("request.expired", { request: requestId, tokens });
    }
    this.#o.telemetry.set("latentwatch.requests.active", this.#seqs.size);
    if (expired.length > 0) this.#delivery.expired(expired.map((e) => e.requestId));
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
