/**
 * One micro-batch through the stages in `serve`: encode
 * (`pipeline/encode.ts`) → evaluation (`pipeline/evaluate.ts`) → each frame's
 * verdict and commands to its tap ({@linkcode TapChannel}) → evidence on the
 * alerts (`pipeline/evidence.ts`) → delivery ({@linkcode AlertDelivery}).
 * What fails is counted and logged: a batch that cannot be encoded drops its
 * frames (gated ones are answered), a frame whose evaluation or tap reply
 * throws costs the batch's other frames (and the batch's delivery) nothing.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { Encoder } from "../core/sae.ts";
import type { EngineStats } from "../core/policy/engine.ts";
import type { LatentTable } from "../core/latent_rows.ts";
import { encodeFrames, type Scratch } from "../pipeline/encode.ts";
import type { BatchOutcome, Evaluator, FrameFailure, FrameOutcome } from "../pipeline/evaluate.ts";
import type { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import { type AlertDelivery, checkpointOf } from "./delivery.ts";
import type { TapChannel } from "./tap_channel.ts";

/** What a {@linkcode BatchStages} needs. */
export interface BatchStagesOptions {
  /** Width of the activations every SAE reads. */
  dIn: number;
  /** At most this many rows per encode call (a frame may hold more than a batch). */
  maxBatchTokens: number;
  /** Per-request policy and steering state. */
  evaluator: Evaluator;
  /** Recent activations and the evidence attached to alerts. */
  evidence: Evidence;
  taps: TapChannel;
  delivery: AlertDelivery;
  telemetry: Telemetry;
  log: Logger;
  /** Called after each batch with the frames and their per-token latents (for displays). */
  onEncoded?: OnEncoded;
}

/** What the `onEncoded` hook learns about a batch besides its frames and latents. */
export interface EncodedBatch {
  /**
   * A frame's arrival at the sidecar (`performance.now()`), where it is known:
   * during the hook's call only (the batch's frames are let go after it).
   */
  receivedAt: (frame: Frame) => number | undefined;
  /** When the batch's evaluation finished (`performance.now()`). */
  evaluatedAt: number;
}

/**
 * The hook called after each batch: its frames, their per-token latents by
 * SAE, and when each frame arrived and the batch was evaluated (so a bench
 * can split a frame's latency at the sidecar's door).
 */
export type OnEncoded = (
  frames: readonly Frame[],
  latents: ReadonlyMap<string, LatentTable>,
  batch: EncodedBatch,
) => void;

/**
 * Runs batches through the stages, with the generation each was taken under.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import type { Generation } from "../pipeline/generation.ts";
 * declare const stages: BatchStages;
 * declare const gen: Generation;
 * declare const frames: Frame[];
 * await stages.process(gen, frames);
 * ```
 */
export class BatchStages {
  readonly #o: BatchStagesOptions;
  /** The `onEncoded` hook's view of arrival times (made once, not per batch). */
  readonly #receivedAt: (frame: Frame) => number | undefined;
  /** Reused across batches to gather their frames' rows. */
  readonly #scratch: Scratch = { data: new Float32Array(0) };
  /** Per generation, the encoders a gated batch's second pass runs (made once, not per batch). */
  readonly #secondPass = new WeakMap<Generation, ReadonlyMap<string, Encoder>>();

  constructor(opts: BatchStagesOptions) {
    this.#o = opts;
    this.#receivedAt = (frame) => opts.taps.receivedAt(frame);
  }

  /** Encode, evaluate, answer and deliver one batch; then its frames' origins are forgotten. */
  async process(gen: Generation, frames: Frame[]): Promise<void> {
    try {
      await this.#process(gen, frames);
    } finally {
      this.#o.taps.observeDeferred(); // where the batch threw before observing them
      this.#o.taps.forget(frames);
    }
  }

  async #process(gen: Generation, frames: Frame[]): Promise<void> {
    const { evaluator, taps } = this.#o;
    const n = frames.reduce((s, f) => s + f.tokens, 0);
    if (
      gen.verdictEncoders && n > 0 && frames.some((f) => taps.isGated(f)) &&
      evaluator.canSplit(frames)
    ) {
      return await this.#processGated(gen, gen.verdictEncoders, frames, n);
    }
    let latents: ReadonlyMap<string, LatentTable> = new Map();
    if (n > 0) {
      try {
        latents = await this.#encode(gen.encoders, frames);
        this.#o.telemetry.add("latentwatch.batches");
      } catch (err) {
        this.#encodeFailed(frames, n, err as Error);
        return;
      }
    }
    let outcome: BatchOutcome;
    try {
      outcome = evaluator.evaluateBatch(gen, frames, latents);
    } catch (err) {
      // the ring holds every encoded batch's tokens, evaluated or not (later alerts may span them)
      this.#o.evidence.remember(frames);
      throw err;
    }
    const evaluatedAt = performance.now();
    // latencies are observed once the verdicts are out (see TapChannel.deferLatencies)
    taps.deferLatencies();
    this.#act(frames, outcome.frames);
    // the verdicts go out before the batch's bookkeeping: the bus flushes what the replies
    // queued in a microtask queued before this one, so the model waits for none of what follows
    await null;
    taps.observeDeferred();
    await this.#afterVerdicts(gen, frames, latents, outcome, evaluatedAt);
  }

  /**
   * A batch with gated frames, in two passes (core/policy/verdict_rules.ts):
   * the latents the steering rules read are encoded and those rules
   * evaluated, the gated frames answered and the answers written; then the
   * rest is encoded and the other rules evaluated. The model waits for the
   * first pass only.
   */
  async #processGated(
    gen: Generation,
    verdictEncoders: ReadonlyMap<string, Encoder>,
    frames: Frame[],
    tokens: number,
  ): Promise<void> {
    const { evaluator, taps } = this.#o;
    // an encoder both passes share is encoded once, in the first, and counted there
    const shared = (id: string) => gen.encoders.get(id) === verdictEncoders.get(id);
    let rest = this.#secondPass.get(gen);
    if (!rest) {
      rest = new Map([...gen.encoders].filter(([id]) => !shared(id)));
      this.#secondPass.set(gen, rest);
    }
    let early: ReadonlyMap<string, LatentTable>;
    try {
      early = await this.#encode(verdictEncoders, frames, shared);
    } catch (err) {
      this.#encodeFailed(frames, tokens, err as Error);
      return;
    }
    const first = evaluator.evaluateVerdicts(gen, frames, early);
    taps.deferLatencies();
    this.#act(frames, first.frames);
    await null; // the verdicts are written here (see #process)
    taps.observeDeferred();
    let latents: Map<string, LatentTable>;
    try {
      const encoded = await this.#encode(rest, frames);
      latents = new Map();
      for (const id of gen.encoders.keys()) latents.set(id, encoded.get(id) ?? early.get(id)!);
      this.#o.telemetry.add("latentwatch.batches");
    } catch (err) {
      // the frames have their verdicts (and commands went out): the steering rules' alerts still
      // go, with the latents they were evaluated on; what is lost is the other rules'
      this.#restEncodeFailed(frames, tokens, err as Error);
      const outcome = evaluator.finishBatch(gen, frames, early, first, { rest: false });
      await this.#afterVerdicts(gen, frames, early, outcome, performance.now());
      return;
    }
    let outcome: BatchOutcome;
    try {
      outcome = evaluator.finishBatch(gen, frames, latents, first);
    } catch (err) {
      this.#o.evidence.remember(frames);
      throw err;
    }
    outcome.frames.forEach((o, i) => {
      // a failure in the second pass: the frame has its verdict, its other rules are lost
      if ("error" in o && !("error" in first.frames[i])) this.#evaluateFailed(frames[i], o.error);
    });
    await this.#afterVerdicts(gen, frames, latents, outcome, performance.now());
  }

  /**
   * Encode the frames' rows with `encoders`, counting the tokens of those
   * `counted` says. A frame may hold more tokens than a batch: at most
   * `maxBatchTokens` rows go to one encode call.
   */
  #encode(
    encoders: ReadonlyMap<string, Encoder>,
    frames: readonly Frame[],
    counted: (id: string) => boolean = () => true,
  ): Promise<Map<string, LatentTable>> {
    const t = this.#o.telemetry;
    return encodeFrames(encoders, frames, {
      dIn: this.#o.dIn,
      maxBatchTokens: this.#o.maxBatchTokens,
      scratch: this.#scratch,
      onEncoded: (sae, tokens) => {
        if (counted(sae)) t.add("latentwatch.tokens.encoded", tokens, { sae });
      },
    });
  }

  /** Answer each frame (verdict or commands), or say why its evaluation failed. */
  #act(frames: readonly Frame[], outcomes: readonly (FrameOutcome | FrameFailure)[]): void {
    const { telemetry: t, taps } = this.#o;
    outcomes.forEach((o, i) => {
      const frame = frames[i];
      if ("error" in o) {
        // one frame's failure must not cost the batch's other frames their evaluation
        this.#evaluateFailed(frame, o.error);
        taps.replyError(frame, `evaluation failed: ${o.error.message}`);
        return;
      }
      try {
        taps.act(frame, o);
      } catch (err) {
        // a tap reply that throws must not cost the batch its delivery and checkpoint
        t.add("latentwatch.pipeline.errors", 1, { stage: "tap" });
        this.#o.log.error("frame.tap_failed", {
          request: frame.requestId,
          position: frame.position,
          error: (err as Error).message,
        });
        taps.replyError(frame, `tap reply failed: ${(err as Error).message}`);
      }
    });
  }

  /** A frame whose evaluation threw: counted and logged. */
  #evaluateFailed(frame: Frame, error: Error): void {
    this.#o.telemetry.add("latentwatch.evaluate.errors");
    this.#o.log.error("frame.evaluate_failed", {
      request: frame.requestId,
      position: frame.position,
      error: error.message,
    });
  }

  /** What follows the verdicts: latencies, the evidence ring, alerts, delivery and the hook. */
  async #afterVerdicts(
    gen: Generation,
    frames: Frame[],
    latents: ReadonlyMap<string, LatentTable>,
    outcome: BatchOutcome,
    evaluatedAt: number,
  ): Promise<void> {
    const { telemetry: t, taps, evaluator } = this.#o;
    for (const frame of frames) {
      const receivedAt = taps.receivedAt(frame);
      if (receivedAt !== undefined) {
        t.observe("latentwatch.frame.latency", (evaluatedAt - receivedAt) / 1000);
      }
    }
    this.#o.evidence.remember(frames);
    const alerts = outcome.alerts;
    if (alerts.length > 0) await this.#attachEvidence(gen, alerts);
    this.#o.delivery.deliver(alerts, frames);
    reportEngine(evaluator.stats, t);
    this.#o.onEncoded?.(frames, latents, { receivedAt: this.#receivedAt, evaluatedAt });
  }

  /** A batch that could not be encoded: its frames are counted as dropped, gated ones answered. */
  #encodeFailed(frames: Frame[], tokens: number, err: Error): void {
    this.#countEncodeFailure(frames, tokens, err);
    // the requests that ended in this batch still end: their state goes now, not at the TTL
    for (const f of frames) {
      if (f.endOfRequest) this.#o.evaluator.endRequest(f.requestId);
      this.#o.taps.replyError(f, `encode failed: ${err.message}`);
    }
    this.#o.delivery.checkpoint(checkpointOf(frames)); // counted as dropped: not lost at a restart
  }

  /**
   * A gated batch's second encode failed: its frames have their verdicts and
   * the steering rules' alerts go out, but the other rules did not run on
   * them, so they are counted as dropped.
   */
  #restEncodeFailed(frames: Frame[], tokens: number, err: Error): void {
    this.#countEncodeFailure(frames, tokens, err, {
      note:
        "gated frames had their verdicts and the steering rules' alerts; the other rules did not run",
    });
  }

  #countEncodeFailure(frames: Frame[], tokens: number, err: Error, extra = {}): void {
    const t = this.#o.telemetry;
    t.add("latentwatch.encode.errors");
    t.add("latentwatch.frames.dropped", frames.length, { reason: "encode_error" });
    t.add("latentwatch.tokens.dropped", tokens, { reason: "encode_error" });
    this.#o.log.error("batch.encode_failed", {
      frames: frames.length,
      tokens,
      requests: [...new Set(frames.map((f) => f.requestId))].join(","),
      error: err.message,
      ...extra,
    });
  }

  /**
   * Attach evidence to a batch's alerts ({@linkcode Evidence.attach}) and
   * count what it did: best effort, an alert without evidence is never held
   * back.
   */
  async #attachEvidence(gen: Generation, alerts: Alert[]): Promise<void> {
    const { evidence, telemetry: t } = this.#o;
    if (!evidence.enabled) return;
    const report = await evidence.attach(alerts, {
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
}

/**
 * Mirror the policy engine's counters into telemetry.
 *
 * @example
 * ```ts
 * import type { Evaluator } from "../pipeline/evaluate.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const evaluator: Evaluator;
 * reportEngine(evaluator.stats, new Telemetry());
 * ```
 */
export function reportEngine(s: EngineStats, t: Telemetry): void {
  t.set("latentwatch.policy.requests", s.activeRequests);
  t.set("latentwatch.policy.suppressed", s.suppressed);
  t.set("latentwatch.policy.rate_limited", s.rateLimited);
  t.set("latentwatch.policy.excepted", s.excepted);
  t.set("latentwatch.policy.evicted", s.evicted.ttl, { reason: "ttl" });
  t.set("latentwatch.policy.evicted", s.evicted.capacity, { reason: "capacity" });
}
