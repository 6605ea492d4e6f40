/**
 * The reference encoder of frame format v1 (`docs/frame-format.md`): the
 * headers of a frame, checked, and its tensor rounded to the frame's dtype.
 * Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { BYTES_PER_ELEMENT, f32ToBf16, f32ToF16 } from "../dtype.ts";
import {
  type EncodeFrameMeta,
  firstNonFinite,
  FRAME_VERSION,
  FrameError,
  HEADER,
  META_KEY,
  META_PREFIX,
  nonFinite,
  show,
  validTraceparent,
  type Where,
} from "./format.ts";
import { checkName } from "./subjects.ts";
import { utf8Length } from "../utf8_length.ts";

/**
 * Size in bytes of a header block as NATS puts it on the wire
 * (`NATS/1.0\r\n`, `Name: value\r\n` per header, a blank line; 0 for no
 * headers). NATS counts it against `max_payload` together with the payload.
 *
 * @example
 * ```ts
 * headerWireBytes({ "Lw-Version": "1" }); // 27
 * ```
 */
export function headerWireBytes(headers: Record<string, string>): number {
  let n = 0;
  let any = false;
  // for-in, not Object.entries: a tap sizes every frame it sends with this
  for (const k in headers) {
    if (!Object.hasOwn(headers, k)) continue;
    any = true;
    n += utf8Length(k) + utf8Length(headers[k]) + 4; // "\r\n" + ": "
  }
  return any ? n + 12 : 0; // "NATS/1.0" + "\r\n\r\n"
}

/**
 * JSON text of `strings`, ASCII only: every character outside printable ASCII
 * is written as a `\uXXXX` escape, so the text is a safe header value.
 *
 * @example
 * ```ts
 * asciiJson(["é", "a"]); // '["\\u00e9","a"]'
 * ```
 */
export function asciiJson(strings: string[]): string {
  return JSON.stringify(strings).replace(
    /[^\x20-\x7e]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

function checkCount(field: string, value: unknown, where: Where, min = 0): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    const what = min === 0 ? "a non-negative integer" : `an integer ≥ ${min}`;
    throw new FrameError(field, what, String(value), where);
  }
  return value;
}

/**
 * The headers of a frame, without encoding its tensor (a tap uses this to
 * size frames under the bus's max payload). Validates `meta` like
 * {@linkcode encodeFrame}.
 *
 * @example
 * ```ts
 * const h = frameHeaders(
 *   { model: "gpt2", hook: "blocks.6.hook_resid_post", requestId: "r1", position: 0, seq: 0, dtype: "f32" },
 *   2,
 *   768,
 * );
 * h["Lw-Shape"]; // "2,768"
 * ```
 */
export function frameHeaders(
  meta: EncodeFrameMeta,
  tokens: number,
  dModel: number,
): Record<string, string> {
  const where: Where = {};
  checkName(HEADER.requestId, meta.requestId, where);
  where.requestId = meta.requestId;
  checkName(HEADER.model, meta.model, where);
  checkName(HEADER.hook, meta.hook, where);
  checkCount(HEADER.position, meta.position, where);
  checkCount(HEADER.seq, meta.seq, where);
  if (!(meta.dtype in BYTES_PER_ELEMENT)) {
    throw new FrameError(HEADER.dtype, "one of f32, f16, bf16", show(String(meta.dtype)), where);
  }
  checkCount("tokens", tokens, where);
  checkCount("dModel", dModel, where, 1);
  const h: Record<string, string> = {
    [HEADER.version]: String(FRAME_VERSION),
    [HEADER.model]: meta.model,
    [HEADER.hook]: meta.hook,
    [HEADER.requestId]: meta.requestId,
    [HEADER.position]: String(meta.position),
    [HEADER.seq]: String(meta.seq),
    [HEADER.dtype]: meta.dtype,
    [HEADER.shape]: `${tokens},${dModel}`,
  };
  if (meta.tokenIds !== undefined) {
    if (meta.tokenIds.length !== tokens) {
      throw new FrameError(
        HEADER.tokenIds,
        `${tokens} token ids (one per token)`,
        `${meta.tokenIds.length}`,
        where,
      );
    }
    for (const id of meta.tokenIds) checkCount(HEADER.tokenIds, id, where);
    if (tokens > 0) h[HEADER.tokenIds] = meta.tokenIds.join(",");
  }
  if (meta.tokenText !== undefined) {
    if (meta.tokenText.length !== tokens) {
      throw new FrameError(
        HEADER.tokenText,
        `${tokens} token strings (one per token)`,
        `${meta.tokenText.length}`,
        where,
      );
    }
    for (const t of meta.tokenText) {
      if (typeof t !== "string") {
        throw new FrameError(HEADER.tokenText, "strings", typeof t, where);
      }
    }
    if (tokens > 0) h[HEADER.tokenText] = asciiJson(meta.tokenText);
  }
  if (meta.phase !== undefined) {
    if (meta.phase !== "prefill" && meta.phase !== "decode") {
      throw new FrameError(HEADER.phase, "prefill or decode", show(String(meta.phase)), where);
    }
    h[HEADER.phase] = meta.phase;
  }
  if (meta.tenant !== undefined) h[HEADER.tenant] = checkName(HEADER.tenant, meta.tenant, where);
  for (const [key, value] of Object.entries(meta.meta ?? {})) {
    const field = `${META_PREFIX}${key}`;
    if (!META_KEY.test(key)) {
      throw new FrameError(field, "a metadata key of [a-z0-9_-]+", show(key), where);
    }
    h[field] = checkName(field, value, where);
  }
  if (meta.endOfRequest) h[HEADER.end] = "1";
  if (meta.traceparent !== undefined) {
    if (!validTraceparent(meta.traceparent)) {
      throw new FrameError(
        HEADER.traceparent,
        "a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)",
        show(meta.traceparent),
        where,
      );
    }
    h[HEADER.traceparent] = meta.traceparent;
    if (meta.tracestate !== undefined) {
      if (/[\r\n]/.test(meta.tracestate)) {
        throw new FrameError(HEADER.tracestate, "no CR or LF", show(meta.tracestate), where);
      }
      h[HEADER.tracestate] = meta.tracestate;
    }
  }
  return h;
}

/**
 * Encode one frame. `data` is `[tokens, dModel]` row-major f32; it is
 * rounded to `meta.dtype` (nearest even). Every value must be finite after
 * rounding (70000 overflows f16). For f32 the payload is a view of `data`,
 * not a copy: copy it if `data` is reused before the bus has sent it.
 *
 * @example
 * ```ts
 * const { headers, payload } = encodeFrame(
 *   { model: "gpt2", hook: "blocks.6.hook_resid_post", requestId: "r1", position: 0, seq: 0, dtype: "bf16" },
 *   new Float32Array([1, -2]),
 *   1,
 *   2,
 * );
 * // headers["Lw-Shape"] === "1,2"; payload: 80 3f 00 c0
 * ```
 */
export function encodeFrame(
  meta: EncodeFrameMeta,
  data: Float32Array,
  tokens: number,
  dModel: number,
): { headers: Record<string, string>; payload: Uint8Array } {
  const headers = frameHeaders(meta, tokens, dModel);
  return { headers, payload: framePayload(meta, data, tokens, dModel) };
}

/**
 * The payload of a frame whose headers are already made (a tap sizes its
 * frames with {@linkcode frameHeaders} and keeps the headers of the size it
 * chose): `data` rounded to `meta.dtype`, checked as in
 * {@linkcode encodeFrame}; for f32 a view of `data`.
 *
 * @example
 * ```ts
 * const payload = framePayload(
 *   { requestId: "r1", position: 0, dtype: "bf16" },
 *   new Float32Array([1, -2]),
 *   1,
 *   2,
 * ); // 80 3f 00 c0
 * ```
 */
export function framePayload(
  meta: Pick<EncodeFrameMeta, "requestId" | "position" | "dtype">,
  data: Float32Array,
  tokens: number,
  dModel: number,
): Uint8Array {
  const where: Where = { requestId: meta.requestId };
  checkCount("tokens", tokens, where);
  checkCount("dModel", dModel, where, 1);
  if (!(data instanceof Float32Array) || data.length !== tokens * dModel) {
    throw new FrameError(
      "payload",
      `${tokens}·${dModel} = ${tokens * dModel} f32 values`,
      data instanceof Float32Array ? `${data.length}` : typeof data,
      where,
    );
  }
  if (meta.dtype === "f32") {
    const bad = firstNonFinite(data);
    if (bad >= 0) throw nonFinite(data[bad], bad, dModel, meta.position, "", where);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  if (meta.dtype !== "f16" && meta.dtype !== "bf16") {
    throw new FrameError(HEADER.dtype, "one of f32, f16, bf16", show(String(meta.dtype)), where);
  }
  const bits = meta.dtype === "f16" ? f32ToF16(data) : f32ToBf16(data);
  const exp = meta.dtype === "f16" ? 0x7c00 : 0x7f80;
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & exp) === exp) {
      const v = data[i];
      const note = Number.isFinite(v) ? ` (overflows ${meta.dtype} to ±Infinity)` : "";
      throw nonFinite(v, i, dModel, meta.position, note, where);
    }
  }
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}
