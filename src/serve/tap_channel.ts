/**
 * The channel back to the taps in `serve`: gate verdicts for gated frames
 * (on the frame's reply subject), steer commands on the tap's steer subject,
 * and the acks the taps send for them (docs/steering.md). Every reply, command
 * and ack is counted; a publish that fails is counted and logged, never thrown.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import { encodeCommand, encodeVerdict } from "../core/steer/encode.ts";
import { parseAck } from "../core/steer/parse.ts";
import type { GateVerdict, SteerCommand } from "../core/steer/protocol.ts";
import { steerAckSubject, steerSubject } from "../core/steer/subjects.ts";
import type { Bus, BusMessage, BusSubscription } from "../bus/bus.ts";
import { subjectPartition } from "../pipeline/decode.ts";
import type { FrameOutcome } from "../pipeline/evaluate.ts";
import type { SteerSkip } from "../pipeline/steer_plan.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";

/** What a {@linkcode TapChannel} needs. */
export interface TapChannelOptions {
  /** The tap's model and hook (the ack subject is derived from them). */
  model: string;
  hook: string;
  bus: Bus;
  telemetry: Telemetry;
  log: Logger;
}

/** Where a frame came from: its partition, the reply subject of a gated frame, when it arrived. */
interface Origin {
  partition: number;
  reply?: string;
  /** `performance.now()` at its arrival (the latency histograms start there). */
  receivedAt: number;
}

/**
 * Replies, commands and acks between `serve` and its taps.
 *
 * @example
 * ```ts
 * import type { Bus } from "../bus/bus.ts";
 * import { Logger } from "../shared/log.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const bus: Bus;
 * const taps = new TapChannel({
 *   model: "gpt2",
 *   hook: "blocks.6.hook_resid_post",
 *   bus,
 *   telemetry: new Telemetry(),
 *   log: new Logger(),
 * });
 * taps.subscribeAcks();
 * taps.reply("_INBOX.1", { requestId: "r1", seq: 0, verdict: "continue", commands: [] });
 * taps.close();
 * ```
 */
export class TapChannel {
  readonly #o: TapChannelOptions;
  readonly #origin = new WeakMap<Frame, Origin>();
  #ackSub: BusSubscription | null = null;
  /** Gate latencies (s) of the replies since {@linkcode deferLatencies}, not yet observed. */
  #deferred: number[] | null = null;

  constructor(opts: TapChannelOptions) {
    this.#o = opts;
  }

  /** Subscribe to the taps' acks for the commands sent (`steer.ack` lines, `latentwatch.steer.acks`). */
  subscribeAcks(): void {
    if (this.#ackSub) return;
    const subject = steerAckSubject(this.#o.model, this.#o.hook);
    this.#ackSub = this.#o.bus.subscribe(subject, (msg) => this.#onAck(msg), (err) => {
      this.#o.telemetry.add("latentwatch.bus.errors", 1, { type: "subscription" });
      this.#o.log.error("subscription.error", { subject, error: err.message });
    });
  }

  /** Stop taking acks. */
  close(): void {
    this.#ackSub?.unsubscribe();
    this.#ackSub = null;
  }

  /**
   * Remember where `frame` came from: the subject it arrived on, the reply
   * subject when it is gated, and when it arrived (`performance.now()`).
   */
  remember(
    frame: Frame,
    msg: Pick<BusMessage, "subject" | "reply">,
    receivedAt: number = performance.now(),
  ): void {
    this.#origin.set(frame, {
      partition: subjectPartition(msg.subject),
      ...(msg.reply ? { reply: msg.reply } : {}),
      receivedAt,
    });
  }

  /**
   * Let go of what {@linkcode remember} kept for `frames`, once they are
   * done. The entries are weak, but V8 clears a weak map's entry only in a
   * full collection: every frame left there outlives its scavenges, reaches
   * the old generation and brings the next full collection nearer
   * (docs/performance-history.md, "Seventeenth sitting").
   */
  forget(frames: readonly Frame[]): void {
    for (const f of frames) this.#origin.delete(f);
  }

  /** Whether `frame` is gated: its tap waits for a verdict. */
  isGated(frame: Frame): boolean {
    return this.#origin.get(frame)?.reply !== undefined;
  }

  /** When `frame` arrived (`performance.now()`), if it was remembered. */
  receivedAt(frame: Frame): number | undefined {
    return this.#origin.get(frame)?.receivedAt;
  }

  /**
   * Carry out what one frame's evaluation asks for: count the steering
   * planned and skipped, answer a gated frame with its verdict (its commands
   * inside), or publish the commands on the tap's steer subject.
   */
  act(frame: Frame, o: FrameOutcome): void {
    for (const f of o.firings) {
      if (f.steer.length > 0) {
        this.#o.telemetry.add("latentwatch.steer.planned", f.steer.length, { rule: f.rule.id });
      }
    }
    for (const s of o.skipped) this.#countSkipped(s);
    const origin = this.#origin.get(frame);
    if (origin?.reply) {
      // a gated frame: its commands go in the verdict, which the tap waits for
      this.#answer(origin, {
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

  /** Answer a gated frame the pipeline could not evaluate (nothing for an ungated one). */
  replyError(frame: Frame, reason: string): void {
    const origin = this.#origin.get(frame);
    if (!origin?.reply) return;
    this.#answer(origin, {
      requestId: frame.requestId,
      seq: frame.seq,
      verdict: "error",
      commands: [],
      reason,
    });
  }

  /** Publish a gate verdict on `subject`, counted by verdict; a failed publish is counted and logged. */
  reply(subject: string, verdict: GateVerdict): void {
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

  /**
   * From now until {@linkcode observeDeferred}, keep each reply's gate
   * latency instead of observing it at once: a batch's verdicts then leave
   * before the histogram's work (about 1 µs a verdict here, more when the
   * caches are cold; docs/performance-history.md, twenty-seventh sitting).
   *
   * @example
   * ```ts
   * declare const taps: TapChannel;
   * taps.deferLatencies();
   * // ... answer the batch's gated frames, let the bus write them ...
   * taps.observeDeferred();
   * ```
   */
  deferLatencies(): void {
    this.#deferred ??= [];
  }

  /** Observe the gate latencies kept since {@linkcode deferLatencies}, and stop keeping them. */
  observeDeferred(): void {
    const kept = this.#deferred;
    this.#deferred = null;
    if (kept === null) return;
    for (const s of kept) this.#o.telemetry.observe("latentwatch.gate.latency", s);
  }

  /** Answer a gated frame and record the time from its arrival (`latentwatch.gate.latency`). */
  #answer(origin: Origin, verdict: GateVerdict): void {
    this.reply(origin.reply!, verdict);
    // measured when answered, observed now or once the batch's verdicts are out
    const seconds = (performance.now() - origin.receivedAt) / 1000;
    if (this.#deferred !== null) this.#deferred.push(seconds);
    else this.#o.telemetry.observe("latentwatch.gate.latency", seconds);
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
}
