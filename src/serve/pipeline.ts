/**
 * The monitor pipeline in `serve`: the stages of `src/pipeline/` wired to
 * the bus, the sinks, the checkpoints and telemetry. Tap frames come in
 * through {@linkcode Intake} (`intake.ts`: decode and Lw-Seq tracking) →
 * bounded micro-batch across requests → the batch loop here, which runs each
 * batch through {@linkcode BatchStages} (`batch.ts`: encode → evaluation →
 * evidence) under the {@linkcode Generation} it was taken with, and releases
 * a swapped-out generation only once no batch uses it. Alerts go out through
 * {@linkcode AlertDelivery} (`delivery.ts`: write-ahead, checkpoint, then the
 * other sinks); gate verdicts and steer commands back to the taps through
 * {@linkcode TapChannel} (`tap_channel.ts`). Its options: `pipeline_options.ts`.
 *
 * @module
 */
import { MicroBatcher } from "../core/batcher.ts";
import type { Frame } from "../core/frame/format.ts";
import { releaseFrameData } from "../core/frame/decode.ts";
import { partitionOf } from "../core/frame/subjects.ts";
import type { BusSubscription } from "../bus/bus.ts";
import type { AlertSink } from "../sinks/sink.ts";
import { Evaluator } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import { SequenceTracker } from "../pipeline/sequence.ts";
import { BatchStages, reportEngine } from "./batch.ts";
import { AlertDelivery } from "./delivery.ts";
import { Intake } from "./intake.ts";
import {
  evidenceOf,
  firstGeneration,
  type PipelineOptions,
  steeringOf,
} from "./pipeline_options.ts";
import { TapChannel } from "./tap_channel.ts";

export type { Generation } from "../pipeline/generation.ts";
export type { PipelineOptions } from "./pipeline_options.ts";

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
  /** With `partitions`: each owned partition's subscription. */
  readonly #partitionSubs = new Map<number, BusSubscription>();
  /** Released partitions whose requests are being forgotten (see `release`). */
  readonly #handoffs = new Set<Promise<string[]>>();
  #worker: Promise<void> | null = null;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #generation: Generation;
  /** Each request's Lw-Seq (intake). */
  readonly #seqs: SequenceTracker;
  /** Per-request policy and steering state lives here, across reloads. */
  readonly #evaluator: Evaluator;
  readonly #intake: Intake;
  readonly #stages: BatchStages;
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
    this.#generation = firstGeneration(opts);
    const checkpoints = opts.checkpoints;
    this.#seqs = new SequenceTracker({
      maxRequests: opts.maxRequests,
      ...(checkpoints ? { resume: (id: string) => checkpoints.take(id) } : {}),
    });
    this.#evaluator = new Evaluator(opts.policies, {
      monitor: opts.monitor,
      dIn: opts.dIn,
      steering: steeringOf(opts),
      maxRequests: opts.maxRequests,
      requestTtlMs: opts.requestTtlMs,
      ...(opts.redaction ? { redaction: opts.redaction } : {}),
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
      ...(opts.partitions !== undefined ? { partitions: opts.partitions } : {}),
      telemetry,
      log,
      onMessage: opts.onMessage,
    });
    this.#stages = new BatchStages({
      dIn: opts.dIn,
      maxBatchTokens: opts.batching.maxBatchTokens,
      evaluator: this.#evaluator,
      evidence: new Evidence(evidenceOf(opts)),
      taps: this.#taps,
      delivery: this.#delivery,
      telemetry,
      log,
      onEncoded: opts.onEncoded,
    });
  }

  /** Subscribe to the tap subject (unless partitioned: see {@linkcode own}) and start the encode worker. */
  start(): void {
    if (this.#running || this.#stopping) return;
    if (this.#o.partitions === undefined) this.#sub = this.#subscribe(this.#o.subject);
    if (steeringOf(this.#o).enabled) this.#taps.subscribeAcks();
    this.#running = true;
    this.#worker = this.#run();
    const ttl = this.#o.requestTtlMs ?? 600_000;
    this.#sweeper = setInterval(() => this.#sweep(ttl), Math.min(ttl, 10_000));
  }

  #subscribe(subject: string): BusSubscription {
    return this.#o.bus.subscribe(
      subject,
      (msg) => this.#intake.receive(msg),
      (err) => {
        this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "subscription" });
        this.#o.log.error("subscription.error", { subject, error: err.message });
      },
      // intake copies what it keeps (the activations into the shared slabs, headers as strings)
      { borrows: true },
    );
  }

  /** The subject of partition `p`: the filter's last token replaced by `p`. */
  partitionSubject(p: number): string {
    return `${this.#o.subject.slice(0, this.#o.subject.lastIndexOf(".") + 1)}${p}`;
  }

  /** Partitioned: start taking partition `p`'s frames. */
  own(p: number): void {
    if (this.#partitionSubs.has(p) || this.#stopping) return;
    this.#partitionSubs.set(p, this.#subscribe(this.partitionSubject(p)));
  }

  /**
   * Partitioned: stop taking partition `p`'s frames at once (before this
   * returns), then, in the background, let the frames already queued be
   * processed (up to `timeoutMs`) and forget its requests' window state
   * (another sidecar carries on with them), counted in
   * `latentwatch.requests.handed_off`. {@linkcode stop} waits for these.
   * Resolves with the requests forgotten.
   */
  release(p: number, timeoutMs = 5000): Promise<string[]> {
    const sub = this.#partitionSubs.get(p);
    if (!sub) return Promise.resolve([]);
    sub.unsubscribe();
    this.#partitionSubs.delete(p);
    const done = this.#forgetPartition(p, this.#intake.accepted, timeoutMs);
    this.#handoffs.add(done);
    done.finally(() => this.#handoffs.delete(done));
    return done;
  }

  /** Once the frames accepted before `mark` are processed, forget partition `p`'s requests. */
  async #forgetPartition(p: number, mark: number, timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.#processed < mark && this.#running && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.#processed < mark && this.#running) {
      // frames of p still queued are evaluated with fresh state after this: say so
      this.#o.telemetry.add("latentwatch.partition.errors", 1);
      this.#o.log.warn("partition.drain_timeout", {
        partition: p,
        waited_ms: timeoutMs,
        frames_queued: mark - this.#processed,
        note: "its requests' state is forgotten now; their queued frames start it afresh",
      });
    }
    const gone = this.#seqs.forget((id) => partitionOf(id, this.#o.partitions ?? 1) === p);
    for (const id of gone) this.#evaluator.endRequest(id);
    if (gone.length > 0) {
      this.#delivery.expired(gone);
      this.#o.telemetry.add("latentwatch.requests.handed_off", gone.length);
      this.#o.log.info("partition.handed_off", {
        partition: p,
        requests: gone.length,
        first: gone.slice(0, 16).join(","),
      });
    }
    this.#o.telemetry.set("latentwatch.requests.active", this.#seqs.size);
    return gone;
  }

  /** Partitioned: the partitions whose frames are taken now. */
  get ownedPartitions(): number[] {
    return [...this.#partitionSubs.keys()].sort((a, b) => a - b);
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
    if (!this.#inUse.get(old)) {
      this.#inUse.delete(old); // its count stayed at 0 while it was current (see #process)
      return Promise.resolve(old);
    }
    return new Promise((resolve) => this.#released.set(old, () => resolve(old)));
  }

  /**
   * True while the tap subscription can deliver (started, not stopped, and
   * not closed by the server; see `BusSubscription.active`).
   */
  get subscribed(): boolean {
    if (this.#o.partitions !== undefined) {
      return this.#running && [...this.#partitionSubs.values()].every((s) => s.active);
    }
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
    for (const sub of this.#partitionSubs.values()) sub.unsubscribe();
    this.#partitionSubs.clear();
    this.#taps.close();
    clearInterval(this.#sweeper);
    this.#stopping = true;
    this.#batcher.close();
    await this.#worker;
    await Promise.all(this.#handoffs);
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
          // encoded, evaluated and copied into the evidence ring: the activations are not read again
          releaseFrameData(batch);
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
      await this.#stages.process(gen, frames);
    } finally {
      const left = this.#inUse.get(gen)! - 1;
      // the current generation keeps its entry at 0: deleting and re-adding it for every batch
      // would make the long-lived map rebuild its table, in the old generation, every few batches
      // (unless a swap waits for it: swapped out, then made current again while its batch ran)
      if (left > 0 || (gen === this.#generation && !this.#released.has(gen))) {
        this.#inUse.set(gen, left);
      } else {
        this.#inUse.delete(gen);
        this.#released.get(gen)?.();
        this.#released.delete(gen);
      }
    }
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
    reportEngine(this.#evaluator.stats, this.#o.telemetry);
  }
}
