/**
 * How one call of the tap becomes frames: its arguments checked, then split
 * by tokens into as few frames as fit under the bus's max payload, headers
 * included (`docs/frame-format.md`), and encoded. Pure: nothing here sends
 * or remembers.
 *
 * @module
 */
import { BYTES_PER_ELEMENT, type Dtype } from "../core/dtype.ts";
import { encodeFrame, frameHeaders, framePayload, headerWireBytes } from "../core/frame/encode.ts";
import { type EncodeFrameMeta, FrameError, type FrameMeta } from "../core/frame/format.ts";
import { type FrameKey, type StepHeaders, templatedHeaders } from "./step_headers.ts";

/** Optional per-call metadata; token arrays have one entry per token of the call. */
export type TapExtra = Pick<
  FrameMeta,
  "tokenIds" | "tokenText" | "phase" | "tenant" | "meta" | "traceparent" | "tracestate"
>;

/** Even one token does not fit in a message of the bus's max payload. */
export class FrameTooLargeError extends RangeError {
  constructor(
    readonly requestId: string,
    readonly position: number,
    readonly headerBytes: number,
    readonly payloadBytes: number,
    readonly maxPayload: number,
  ) {
    super(
      `tap (request ${requestId}): token at position ${position}: expected a frame of at most ` +
        `${maxPayload} bytes (the bus's max payload), found ${headerBytes + payloadBytes} bytes ` +
        `for one token (headers ${headerBytes} + payload ${payloadBytes}); raise max_payload, ` +
        `use f16/bf16, or shorten the token text`,
    );
    this.name = "FrameTooLargeError";
  }
}

/** One call's activations: `[tokens, dModel]` row-major, the first token at `position`. */
export interface TapCall {
  requestId: string;
  position: number;
  activations: Float32Array;
  tokens: number;
  dModel: number;
  extra: TapExtra;
}

/** What a call's frames are made for besides the call itself. */
export interface FramePlanContext {
  model: string;
  hook: string;
  dtype: Dtype;
  /** The bus's max payload, headers included. */
  maxPayload: number;
  /** The seq of the call's first frame. */
  firstSeq: number;
  /** The request's last frame key and template, when it had frames before. */
  last?: StepHeaders;
}

/** Where a request stands at its end: its next position and seq, and what its frames carried. */
export interface RequestEnd
  extends Pick<TapExtra, "tenant" | "meta" | "traceparent" | "tracestate"> {
  seq: number;
  nextPosition: number;
  dModel: number;
}

/** One frame of a call: `n` tokens from the call's `start`-th, with the headers it is sent with. */
export interface PlannedFrame {
  start: number;
  n: number;
  headers: Record<string, string>;
}

/** A call's frames, and its frame key when the call is a decode step a template may serve. */
export interface FramePlan {
  frames: PlannedFrame[];
  key: FrameKey | null;
}

/** A planned frame encoded: what it is sent with. */
export interface EncodedFrame {
  headers: Record<string, string>;
  payload: Uint8Array;
}

/** How {@linkcode encodePlannedFrames} encodes. */
export interface EncodeFramesOptions {
  dtype: Dtype;
  /**
   * Copies an f32 payload, which aliases the caller's activations (a NATS
   * client may send it later, after the caller reused its buffer). The tap
   * copies into a shared slab: a buffer of its own per frame costs about a
   * microsecond. f16/bf16 payloads are fresh already.
   */
  copy: (payload: Uint8Array) => Uint8Array;
}

/**
 * Encode every frame of a call's plan, before any is sent: a non-finite
 * value throws {@linkcode FrameError} here, so a bad call sends nothing.
 *
 * @example
 * ```ts
 * declare const call: TapCall, plan: FramePlan;
 * const frames = encodePlannedFrames(call, plan.frames, { dtype: "f32", copy: (p) => p.slice() });
 * frames[0].payload.byteLength; // the first frame's bytes
 * ```
 */
export function encodePlannedFrames(
  call: TapCall,
  plan: readonly PlannedFrame[],
  opts: EncodeFramesOptions,
): EncodedFrame[] {
  const { requestId, position, activations, dModel } = call;
  const { dtype, copy } = opts;
  return plan.map(({ start, n, headers }) => {
    const slice = activations.subarray(start * dModel, (start + n) * dModel);
    const payload = framePayload(
      { requestId, position: position + start, dtype },
      slice,
      n,
      dModel,
    );
    return { headers, payload: dtype === "f32" ? copy(payload) : payload };
  });
}

/**
 * Check a tap's model, hook and dtype as a frame's headers carry them.
 * Throws {@linkcode FrameError}.
 *
 * @example
 * ```ts
 * checkFrameNames({ model: "gpt2", hook: "blocks.6.hook_resid_post", dtype: "bf16" });
 * ```
 */
export function checkFrameNames(ctx: Pick<FramePlanContext, "model" | "hook" | "dtype">): void {
  const { model, hook, dtype } = ctx;
  frameHeaders({ model, hook, requestId: "x", position: 0, seq: 0, dtype }, 0, 1);
}

/**
 * Check a call's shape: integer counts, `tokens · dModel` f32 values, one
 * token id and text per token. Throws {@linkcode FrameError}.
 *
 * @example
 * ```ts
 * checkTapCall({ requestId: "r", position: 0, activations: new Float32Array(8), tokens: 2, dModel: 4, extra: {} });
 * ```
 */
export function checkTapCall(call: TapCall): void {
  const { tokens, dModel, activations, extra } = call;
  const where = { requestId: call.requestId };
  if (!Number.isSafeInteger(tokens) || tokens < 0) {
    throw new FrameError("tokens", "a non-negative integer", String(tokens), where);
  }
  if (!Number.isSafeInteger(dModel) || dModel < 1) {
    throw new FrameError("dModel", "an integer ≥ 1", String(dModel), where);
  }
  if (!(activations instanceof Float32Array) || activations.length !== tokens * dModel) {
    throw new FrameError(
      "activations",
      `${tokens}·${dModel} = ${tokens * dModel} f32 values`,
      activations instanceof Float32Array ? String(activations.length) : typeof activations,
      where,
    );
  }
  const counts: Array<[string, number | undefined]> = [
    ["tokenIds", extra.tokenIds?.length],
    ["tokenText", extra.tokenText?.length],
  ];
  for (const [field, count] of counts) {
    if (count !== undefined && count !== tokens) {
      throw new FrameError(field, `${tokens} entries (one per token)`, String(count), where);
    }
  }
}

/** A decode step's frame key (no token ids or text), or null for a call that carries them. */
function frameKeyOf({ tokens, dModel, extra }: TapCall): FrameKey | null {
  if (extra.tokenIds !== undefined || extra.tokenText !== undefined) return null;
  return {
    tokens,
    dModel,
    phase: extra.phase,
    tenant: extra.tenant,
    meta: extra.meta,
    traceparent: extra.traceparent,
    tracestate: extra.tracestate,
  };
}

/**
 * Split a checked call of at least one token into frames: the largest
 * number of tokens that fits, frame after frame (a frame's size grows with
 * its tokens). The headers made to size a frame are the ones it is sent
 * with, so a decode step (one frame) makes them once, and a step like the
 * request's last two takes them from its template. Throws
 * {@linkcode FrameTooLargeError} when one token cannot fit, or
 * `FrameError` for bad metadata.
 *
 * @example
 * ```ts
 * const call = { requestId: "r", position: 0, activations: new Float32Array(768), tokens: 1, dModel: 768, extra: {} };
 * planFrames(call, { model: "gpt2", hook: "blocks.6.hook_resid_post", dtype: "f32", maxPayload: 1 << 20, firstSeq: 0 }).frames.length; // 1
 * ```
 */
export function planFrames(call: TapCall, ctx: FramePlanContext): FramePlan {
  const { requestId, position, tokens, dModel, extra } = call;
  const { firstSeq, maxPayload: max } = ctx;
  const bytesPerToken = dModel * BYTES_PER_ELEMENT[ctx.dtype];
  const frames: PlannedFrame[] = [];
  const key = frameKeyOf(call);
  const templated = key === null
    ? null
    : templatedHeaders(ctx.last, key, position, firstSeq, tokens * bytesPerToken, max);
  if (templated !== null) frames.push({ start: 0, n: tokens, headers: templated });
  const meta = (start: number, n: number, seq: number): EncodeFrameMeta => ({
    model: ctx.model,
    hook: ctx.hook,
    requestId,
    position: position + start,
    seq,
    dtype: ctx.dtype,
    tokenIds: extra.tokenIds?.slice(start, start + n),
    tokenText: extra.tokenText?.slice(start, start + n),
    phase: extra.phase,
    tenant: extra.tenant,
    meta: extra.meta,
    traceparent: extra.traceparent,
    tracestate: extra.tracestate,
  });
  for (let start = frames.length === 0 ? 0 : tokens; start < tokens;) {
    const seq = firstSeq + frames.length;
    const headersOf = (n: number) => frameHeaders(meta(start, n, seq), n, dModel);
    const fits = (h: Record<string, string>, n: number) =>
      headerWireBytes(h) + n * bytesPerToken <= max;
    let n = tokens - start;
    let headers = headersOf(n);
    if (!fits(headers, n)) {
      headers = headersOf(1);
      if (!fits(headers, 1)) {
        throw new FrameTooLargeError(
          requestId,
          position + start,
          headerWireBytes(headers),
          bytesPerToken,
          max,
        );
      }
      let lo = 1; // fits, with `headers`
      let hi = n; // does not fit
      while (hi - lo > 1) {
        const mid = (lo + hi) >>> 1;
        const h = headersOf(mid);
        if (fits(h, mid)) [lo, headers] = [mid, h];
        else hi = mid;
      }
      n = lo;
    }
    frames.push({ start, n, headers });
    start += n;
  }
  return { frames, key };
}

/**
 * A request's end-of-request marker: no tokens, `Lw-End: 1`, `Lw-Pos` just
 * past the last token, the next seq, and the extras its frames carried.
 *
 * @example
 * ```ts
 * const ctx = { model: "gpt2", hook: "blocks.6.hook_resid_post", dtype: "f32" as const };
 * endOfRequestFrame(ctx, "r", { seq: 5, nextPosition: 17, dModel: 768 }).payload.length; // 0
 * ```
 */
export function endOfRequestFrame(
  ctx: Pick<FramePlanContext, "model" | "hook" | "dtype">,
  requestId: string,
  end: RequestEnd,
): { headers: Record<string, string>; payload: Uint8Array } {
  return encodeFrame(
    {
      model: ctx.model,
      hook: ctx.hook,
      requestId,
      position: end.nextPosition,
      seq: end.seq,
      dtype: ctx.dtype,
      tenant: end.tenant,
      meta: end.meta,
      traceparent: end.traceparent,
      tracestate: end.tracestate,
      endOfRequest: true,
    },
    new Float32Array(0),
    0,
    end.dModel,
  );
}
