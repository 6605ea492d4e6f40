/**
 * Intake in `serve`: each tap message is decoded (`pipeline/decode.ts`), its
 * Lw-Seq followed (`pipeline/sequence.ts`) and the frame offered to the
 * micro-batcher. Every rejected, repeated, lost or dropped frame is counted
 * and logged with its subject and request id; a gated frame that goes no
 * further is answered with an `error` verdict.
 *
 * @module
 */
import type { MicroBatcher } from "../core/batcher.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import { releaseFrameData } from "../core/frame/decode.ts";
import type { BusMessage } from "../bus/bus.ts";
import {
  decodeMonitorFrame,
  type FrameExpect,
  rejectionReason,
  requestOf,
  subjectPartition,
} from "../pipeline/decode.ts";
import { partitionOf } from "../core/frame/subjects.ts";
import type { SequenceTracker } from "../pipeline/sequence.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import type { TapChannel } from "./tap_channel.ts";

/** What an {@linkcode Intake} needs. */
export interface IntakeOptions {
  /** What every frame must carry (model, hook, width). */
  expect: FrameExpect;
  /** Where accepted frames wait for the encode worker. */
  batcher: MicroBatcher<Frame>;
  /** Each request's Lw-Seq. */
  seqs: SequenceTracker;
  /** Answers gated frames. */
  taps: TapChannel;
  /** Record frames `[from, to)` of a request as counted lost, so a restart does not count them again. */
  onLost: (requestId: string, from: number, to: number) => void;
  /**
   * Scale-out: the partition count shared by taps and sidecars. A frame on
   * another partition than its request's is rejected (`partition`: the tap
   * is configured with another count), and a request first seen mid-stream
   * counts in `latentwatch.requests.state_lost` rather than as lost frames.
   */
  partitions?: number;
  telemetry: Telemetry;
  log: Logger;
  /** Called with every message as received, before decoding (trace recording). */
  onMessage?: (msg: BusMessage) => void;
}

/** The pipeline's subscription borrows its messages (the bus reuses their bytes): copy them. */
const COPY_DATA = { copyData: true } as const;

/**
 * Takes tap messages into the batcher.
 *
 * @example
 * ```ts
 * import type { BusMessage } from "../bus/bus.ts";
 * declare const intake: Intake;
 * declare const msg: BusMessage;
 * intake.receive(msg);
 * intake.accepted; // frames queued so far
 * ```
 */
export class Intake {
  readonly #o: IntakeOptions;
  #accepted = 0;
  /** Frames received since the counters were last brought up to date (once a turn). */
  #received = 0;

  constructor(opts: IntakeOptions) {
    this.#o = opts;
  }

  /** Frames accepted into the queue so far. */
  get accepted(): number {
    return this.#accepted;
  }

  /**
   * One tap message. Never throws: whatever the message carries, it is
   * accepted, rejected (counted by reason) or dropped (counted), so nothing
   * reaches the bus client's read loop.
   */
  receive(msg: BusMessage): void {
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
    const { telemetry: t, batcher, taps } = this.#o;
    const receivedAt = performance.now();
    // the count and the queue depth are brought up to date once a turn, not once a frame: a
    // socket read hands over its messages in one turn (eight gated steps, one per request)
    if (this.#received++ === 0) queueMicrotask(this.#report);
    this.#o.onMessage?.(msg);
    let frame: Frame;
    try {
      frame = decodeMonitorFrame(msg, this.#o.expect, COPY_DATA);
    } catch (err) {
      this.#rejected(msg, err);
      return;
    }
    if (this.#o.partitions !== undefined && !this.#onItsPartition(frame, msg)) {
      releaseFrameData([frame]); // its copy's slab room goes back, as a processed frame's does
      return;
    }
    taps.remember(frame, msg, receivedAt);
    if (!this.#track(frame, msg.subject)) {
      if (msg.reply) taps.replyError(frame, "frame dropped: repeated seq");
      taps.forget([frame]);
      releaseFrameData([frame]);
      return;
    }
    if (!batcher.offer(frame, msg.reply !== undefined, receivedAt)) {
      const reason = frame.tokens > batcher.limits.maxQueueTokens
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
        queued_tokens: batcher.queuedTokens,
      });
      if (msg.reply) taps.replyError(frame, `frame dropped: ${reason}`);
      taps.forget([frame]);
      releaseFrameData([frame]);
      return;
    }
    this.#accepted++;
  }

  /** `latentwatch.frames.received` and `latentwatch.queue.depth`, at the end of a turn's messages. */
  readonly #report = (): void => {
    const received = this.#received;
    this.#received = 0; // first: a throw below must not stop the next turn's report
    try {
      const t = this.#o.telemetry;
      t.add("latentwatch.frames.received", received);
      t.set("latentwatch.queue.depth", this.#o.batcher.queuedTokens);
    } catch (err) {
      // a microtask's throw would end the process: logged, as receive() logs its own
      this.#o.log.error("intake.report_failed", { error: (err as Error)?.message ?? String(err) });
    }
  };

  /** True when `frame` came on its request's partition; otherwise counted, logged and answered. */
  #onItsPartition(frame: Frame, msg: BusMessage): boolean {
    const count = this.#o.partitions!;
    const found = subjectPartition(msg.subject);
    const expected = partitionOf(frame.requestId, count);
    if (found === expected) return true;
    this.#rejected(
      msg,
      new FrameError(
        "partition",
        `the request's partition ${expected} of ${count} (the tap's partitions must equal scale_out.partitions)`,
        `partition ${found}`,
        { subject: msg.subject, requestId: frame.requestId },
      ),
    );
    return false;
  }

  /** Count and log a message that is no frame; a gated one is answered with an `error` verdict. */
  #rejected(msg: BusMessage, err: unknown): void {
    const e = err instanceof FrameError ? err : null;
    const reason = rejectionReason(e?.field);
    this.#o.telemetry.add("latentwatch.frames.rejected", 1, { reason });
    const request = e?.requestId ?? requestOf(msg);
    this.#o.log.warn("frame.rejected", {
      subject: msg.subject,
      request,
      reason,
      error: (err as Error).message,
    });
    if (msg.reply) {
      const seq = Number(msg.headers["Lw-Seq"]);
      this.#o.taps.reply(msg.reply, {
        requestId: request,
        seq: Number.isSafeInteger(seq) && seq >= 0 ? seq : 0,
        verdict: "error",
        commands: [],
        reason: `frame rejected: ${(err as Error).message}`,
      });
    }
  }

  /**
   * Follow the frame's Lw-Seq ({@linkcode SequenceTracker}), counting and
   * logging what it finds: gaps are frames lost before reaching us; a seq
   * already passed is a re-sent frame, dropped (returns false).
   */
  #track(frame: Frame, subject: string): boolean {
    const { telemetry: t, seqs } = this.#o;
    const step = seqs.track(frame, Date.now());
    if (step.evicted !== undefined) {
      t.add("latentwatch.requests.evicted", 1, { reason: "capacity" });
      this.#o.log.warn("request.evicted", {
        request: step.evicted,
        reason: "capacity",
        max_requests: seqs.maxRequests,
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
    if (this.#o.partitions !== undefined && step.first && !step.resumed && frame.seq > 0) {
      // partitioned: the request began on another sidecar (its partition moved
      // here), or its first frames were lost; either way its state starts here
      t.add("latentwatch.requests.state_lost", 1, { reason: "joined_mid_request" });
      t.add("latentwatch.frames.before_join", frame.seq);
      this.#o.log.warn("request.state_lost", {
        subject,
        request: frame.requestId,
        partition: subjectPartition(subject),
        first_seq: frame.seq,
        note: "its windows start empty here; earlier frames went to the previous owner",
      });
      this.#o.onLost(frame.requestId, 0, frame.seq);
    } else if (frame.seq > step.expected) {
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
      this.#o.onLost(frame.requestId, step.expected, frame.seq);
    }
    t.set("latentwatch.requests.active", seqs.size);
    return true;
  }
}
