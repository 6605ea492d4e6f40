/**
 * The TypeScript tap: what a model served from Deno or Node calls to publish
 * its residual-stream activations as frame format v1 (`docs/frame-format.md`).
 *
 * One {@linkcode Tap} per model and hook. Each {@linkcode Tap.publish} call is
 * split by tokens into self-contained frames that fit the bus's max payload
 * (headers included); {@linkcode Tap.end} sends the end-of-request marker.
 *
 * @module
 */
import type { Bus, BusSubscription } from "../bus/bus.ts";
import { ByteSlab } from "../core/byte_slab.ts";
import type { Dtype } from "../core/dtype.ts";
import { partitionOf, tapSubject } from "../core/frame/subjects.ts";
import { encodeAck } from "../core/steer/encode.ts";
import type { SteerAck, SteerCommand } from "../core/steer/protocol.ts";
import { steerAckSubject, steerSubjectFilter } from "../core/steer/subjects.ts";
import {
  checkFrameNames,
  checkTapCall,
  type EncodedFrame,
  type EncodeFramesOptions,
  encodePlannedFrames,
  endOfRequestFrame,
  planFrames,
  type TapCall,
  type TapExtra,
} from "./frame_plan.ts";
import {
  awaitVerdict,
  checkGateOptions,
  type GateOptions,
  type StepResult,
  type VerdictHandlers,
} from "./gate.ts";
import { OutagePublisher, type OutageStats } from "./outage.ts";
import { OpenRequests, type RequestState } from "./open_requests.ts";
import { emptySteeringStats, RequestSteering, type SteeringStats } from "./steering.ts";
import { rememberStepHeaders } from "./step_headers.ts";
import type { TapOptions } from "./tap_options.ts";

export { FrameTooLargeError, type TapExtra } from "./frame_plan.ts";
export type { GateOptions, StepResult } from "./gate.ts";
export type { TapOptions } from "./tap_options.ts";

/** A call planned and encoded, to be sent on `subject`; `state.seq` is the next frame's. */
interface PreparedCall {
  subject: string;
  frames: EncodedFrame[];
  state: RequestState;
}

/**
 * Publishes frames for one model and hook.
 *
 * @example
 * ```ts
 * import type { Bus } from "../bus/bus.ts";
 * declare const bus: Bus, prefillActs: Float32Array, stepActs: Float32Array, tokenIds: number[];
 * const tap = new Tap(bus, { model: "gpt2", hook: "blocks.6.hook_resid_post", dtype: "bf16" });
 * tap.publish("req-1", 0, prefillActs, 12, 768, { phase: "prefill", tokenIds });
 * tap.publish("req-1", 12, stepActs, 1, 768, { phase: "decode" });
 * tap.end("req-1");
 * ```
 */
export class Tap {
  readonly model: string;
  readonly hook: string;
  readonly dtype: Dtype;
  readonly partitions: number;
  readonly #bus: Bus;
  readonly #requests: OpenRequests;
  readonly #gate?: GateOptions;
  readonly name: string;
  #steering: RequestSteering | null = null;
  #steerSub: BusSubscription | null = null;
  readonly #out: OutagePublisher;
  /**
   * Copies of f32 payloads (`core/byte_slab.ts`): ten decode steps to a slab at d_model 768;
   * a copy over 8 KiB (d_model past 2,048) gets a buffer of its own.
   */
  readonly #payloads = new ByteSlab(32 * 1024);
  /** How a call's frames are encoded: f32 payloads copied into `#payloads`. */
  readonly #encoding: EncodeFramesOptions;
  /** Header blocks written by the requests' templates (`step_headers.ts`). */
  readonly #headerBytes = new ByteSlab();
  /** The tap subject of each partition, made at its first frame (two regular expressions each). */
  readonly #subjects: string[] = [];
  /** Where a verdict's commands go: acknowledged as rejected, or taken up from the next step. */
  readonly #verdictHandlers: Omit<VerdictHandlers, "fail"> = {
    reject: (err) => this.#sendAck(this.#steering!.rejectParsed(err)),
    receive: (cmd) => this.#receive(cmd),
  };

  constructor(bus: Bus, opts: TapOptions) {
    this.#bus = bus;
    this.#requests = new OpenRequests(opts.maxOpenRequests ?? 100_000);
    this.model = opts.model;
    this.hook = opts.hook;
    this.dtype = opts.dtype ?? "f32";
    this.partitions = opts.partitions ?? 1;
    this.name = opts.name ?? `${opts.model}@tap`;
    this.#out = new OutagePublisher(bus, opts.outage, this.name);
    this.#encoding = { dtype: this.dtype, copy: (payload) => this.#payloads.copy(payload) };
    if (opts.gate) this.#gate = checkGateOptions(opts.gate);
    tapSubject(this.model, this.hook, partitionOf("", this.partitions)); // validates
    checkFrameNames(this);
  }

  /** Requests forgotten because more than `maxOpenRequests` were open (never ended). */
  get evictedRequests(): number {
    return this.#requests.evicted;
  }

  /** What NATS outages cost: held, replayed, dropped, in doubt (see {@linkcode OutagePublisher}). */
  get outageStats(): OutageStats {
    return this.#out.stats;
  }

  /** Requests published and not yet ended (their seq counters are held). */
  get openRequests(): number {
    return this.#requests.size;
  }

  /**
   * Publish `tokens` tokens of activations (`[tokens, dModel]` row-major,
   * the first at `position`). Splits them into as few frames as fit under
   * `bus.maxPayload` (each with its own `Lw-Pos`, seq and slice of token ids
   * and text). Every frame is planned before the first is sent, so a
   * {@linkcode FrameTooLargeError} (one token cannot fit) or a
   * {@linkcode FrameError} (bad metadata, non-finite value) sends nothing.
   * The activations are copied; the caller may reuse its buffer at once.
   * Returns the number of frames sent (0 when `tokens` is 0).
   *
   * @example
   * ```ts
   * declare const tap: Tap;
   * tap.publish("req-1", 0, new Float32Array(768 * 4), 4, 768, { tokenIds: [1, 2, 3, 4] }); // 1
   * ```
   */
  publish(
    requestId: string,
    position: number,
    activations: Float32Array,
    tokens: number,
    dModel: number,
    extra: TapExtra = {},
  ): number {
    const planned = this.#prepare({ requestId, position, activations, tokens, dModel, extra });
    if (!planned) return 0;
    for (const f of planned.frames) this.#send(planned, f);
    return planned.frames.length;
  }

  /** Send one frame of a prepared call (held while NATS is away), and count its seq. */
  #send(planned: PreparedCall, frame: EncodedFrame): void {
    this.#out.publish(planned.subject, frame.payload, frame.headers);
    planned.state.seq++;
  }

  /** Plan and encode the frames of one publish, and record the request (nothing sent yet). */
  #prepare(call: TapCall): PreparedCall | null {
    checkTapCall(call);
    const { requestId, position, tokens, dModel, extra } = call;
    if (tokens === 0) return null;
    const state = this.#requests.get(requestId);
    const firstSeq = state?.seq ?? 0;
    const { frames: plan, key } = planFrames(call, {
      model: this.model,
      hook: this.hook,
      dtype: this.dtype,
      maxPayload: this.#bus.maxPayload,
      firstSeq,
      last: state?.headers,
    });

    // Encode everything before sending anything (non-finite values throw here).
    const frames = encodePlannedFrames(call, plan, this.#encoding);
    const subject = this.#subjectOf(requestId);
    const next: RequestState = {
      seq: firstSeq,
      nextPosition: position + tokens,
      dModel,
      tenant: extra.tenant,
      meta: extra.meta,
      traceparent: extra.traceparent,
      tracestate: extra.tracestate,
      headers: key !== null && plan.length === 1
        ? rememberStepHeaders(state?.headers, key, plan[0].headers, this.#headerBytes)
        : undefined,
    };
    // past the bound, the stalest request (one aborted without end()) is forgotten
    const stalest = this.#requests.touch(requestId, next);
    if (stalest !== undefined) this.#sendAcks(this.#steering?.end(stalest) ?? []);
    return { subject, frames, state: next };
  }

  // -------------------------------------------------------------------------
  // Steering and gating (docs/steering.md)

  /**
   * Listen for steering commands for this model and hook (every partition)
   * and acknowledge them. `dModel` is the hook's width: commands for another
   * width are rejected. Idempotent.
   *
   * @example
   * ```ts
   * declare const tap: Tap;
   * tap.enableSteering(768);
   * ```
   */
  enableSteering(dModel: number): void {
    if (this.#steering) return;
    this.#steering = new RequestSteering({
      model: this.model,
      hook: this.hook,
      dModel,
      tap: this.name,
    });
    this.#steerSub = this.#bus.subscribe(
      steerSubjectFilter(this.model, this.hook),
      (msg) => this.#receive(msg.data),
      (err) => console.error(`tap ${this.name}: steering subscription: ${err.message}`),
    );
  }

  /** Steering and gating counters (all 0 before {@linkcode Tap.enableSteering}). */
  get steeringStats(): SteeringStats {
    return this.#steering?.stats ?? emptySteeringStats();
  }

  #receive(raw: Uint8Array | SteerCommand): void {
    const steering = this.#steering;
    if (!steering) return;
    const ack = steering.receive(
      raw,
      (id) => this.#requests.get(id) !== undefined,
      (id) => this.#requests.get(id)?.nextPosition ?? 0,
    );
    this.#sendAck(ack);
  }

  #sendAck(ack: SteerAck | null): void {
    if (ack) this.#sendAcks([ack]);
  }

  #sendAcks(acks: SteerAck[]): void {
    if (acks.length === 0) return;
    const subject = steerAckSubject(this.model, this.hook);
    for (const ack of acks) {
      try {
        this.#out.publish(subject, encodeAck(ack));
      } catch (err) {
        console.error(`tap ${this.name}: acknowledgement ${ack.id}: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Apply the request's active steering to `activations` (`[tokens, dModel]`,
   * positions from `position`) in place, and acknowledge what took effect.
   * Returns the number of commands newly applied.
   *
   * @example
   * ```ts
   * declare const tap: Tap, hidden: Float32Array;
   * tap.steer("req-1", 12, hidden, 1, 768); // hidden now carries the clamp
   * ```
   */
  steer(
    requestId: string,
    position: number,
    activations: Float32Array,
    tokens: number,
    dModel: number,
  ): number {
    const acks = this.#steering?.apply(requestId, position, activations, tokens, dModel) ?? [];
    this.#sendAcks(acks);
    return acks.length;
  }

  /**
   * Whether `requestId` must stop generating (an abort command, or a gate
   * that failed closed), with the reason.
   */
  aborted(requestId: string, nextPosition?: number): { position: number; reason: string } | null {
    return this.#steering?.aborted(requestId, nextPosition) ?? null;
  }

  /**
   * One generation step of a request: apply steering to `activations` in
   * place, publish the frames, and with a gate wait for the sidecar's
   * verdict (its commands take effect from the next step). Resolves with
   * whether the request may go on. Needs {@linkcode Tap.enableSteering}.
   *
   * @example
   * ```ts
   * declare const tap: Tap, hidden: Float32Array;
   * for (let pos = 12; pos < 64; pos++) {
   *   const r = await tap.step("req-1", pos, hidden, 1, 768, { phase: "decode" });
   *   if (!r.proceed) break;
   * }
   * ```
   */
  async step(
    requestId: string,
    position: number,
    activations: Float32Array,
    tokens: number,
    dModel: number,
    extra: TapExtra = {},
  ): Promise<StepResult> {
    const steering = this.#steering;
    if (!steering) {
      throw new TypeError(`tap ${this.name}: step: expected enableSteering() first, found it off`);
    }
    const stop = (verdict: StepResult["verdict"], waitedMs: number): StepResult => {
      // may the request generate the position after this step?
      const a = steering.aborted(requestId, position + tokens);
      return a
        ? { proceed: false, verdict, waitedMs, reason: a.reason }
        : { proceed: true, verdict, waitedMs };
    };
    if (steering.aborted(requestId, position)) return stop("abort", 0);
    this.steer(requestId, position, activations, tokens, dModel);
    const planned = this.#prepare({ requestId, position, activations, tokens, dModel, extra });
    if (!planned) return stop(this.#gate ? "continue" : "ungated", 0);
    const last = planned.frames.length - 1;
    for (let i = 0; i < last; i++) this.#send(planned, planned.frames[i]);
    const f = planned.frames[last];
    if (!this.#gate) {
      this.#send(planned, f);
      return stop("ungated", 0);
    }
    // the last frame carries the gate: the sidecar answers after evaluating it,
    // and it evaluates a request's frames in order
    const { deadlineMs, onTimeout } = this.#gate;
    if (!this.#out.connected) {
      // no verdict can come: hold the frame for the reconnect, apply the failure mode now
      this.#send(planned, f);
      this.#out.stats.gateOffline++;
      steering.gateFailed(requestId, position + tokens, onTimeout, "no NATS connection");
      return stop("timeout", 0);
    }
    const s = steering.stats;
    s.gateWaits++;
    const started = performance.now();
    const pending = this.#bus.request(planned.subject, f.payload, f.headers, deadlineMs);
    planned.state.seq++;
    const expect = {
      model: this.model,
      hook: this.hook,
      dModel,
      requestId,
      seq: planned.state.seq - 1,
    };
    const { verdict, failure } = await awaitVerdict(pending, expect, this.#verdictHandlers);
    const waited = performance.now() - started;
    s.gateWaitMsTotal += waited;
    s.gateWaitMsMax = Math.max(s.gateWaitMsMax, waited);
    if (failure) steering.gateFailed(requestId, position + tokens, onTimeout, failure);
    return stop(verdict, waited);
  }

  /**
   * Send the end-of-request marker (no tokens, `Lw-End: 1`, `Lw-Pos` just
   * past the last token, the next seq) and free the request's counter. A
   * request never published, or already ended, sends nothing.
   *
   * @example
   * ```ts
   * declare const tap: Tap;
   * tap.end("req-1");
   * ```
   */
  end(requestId: string): void {
    const state = this.#requests.take(requestId);
    if (!state) return;
    this.#sendAcks(this.#steering?.end(requestId) ?? []);
    const { headers, payload } = endOfRequestFrame(this, requestId, state);
    this.#out.publish(this.#subjectOf(requestId), payload, headers);
  }

  /** The subject of `requestId`'s partition. */
  #subjectOf(requestId: string): string {
    const p = partitionOf(requestId, this.partitions);
    return this.#subjects[p] ??= tapSubject(this.model, this.hook, p);
  }

  /** Stop listening for steering commands; publishes still held for a reconnect are counted as dropped. */
  close(): void {
    this.#steerSub?.unsubscribe();
    this.#steerSub = null;
    this.#out.close();
  }
}
