/**
 * Frame format v1: how a tap puts one request's activations on the bus.
 *
 * Metadata travels in NATS headers, the tensor as raw little-endian bytes,
 * `[tokens, dModel]` row-major, in f32, f16 or bf16. Several tokens go in one
 * frame; a frame with `Lw-End` marks the end of a request. The format is
 * written down for implementers of taps in other languages in
 * `docs/frame-format.md`; this module is its reference encoder and strict
 * decoder. Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { BYTES_PER_ELEMENT, type Dtype, f32ToBf16, f32ToF16, toF32 } from "./dtype.ts";

/** The frame format version this module writes and the only one it reads. */
export const FRAME_VERSION = 1;

/** Header names of frame format v1 (matched case-insensitively on decode). */
export const HEADER = {
  version: "Lw-Version",
  model: "Lw-Model",
  hook: "Lw-Hook",
  requestId: "Lw-Request-Id",
  position: "Lw-Pos",
  dtype: "Lw-Dtype",
  shape: "Lw-Shape",
  seq: "Lw-Seq",
  tokenIds: "Lw-Token-Ids",
  tokenText: "Lw-Token-Text",
  phase: "Lw-Phase",
  tenant: "Lw-Tenant",
  end: "Lw-End",
  traceparent: "traceparent",
  tracestate: "tracestate",
} as const;

/** Request metadata travels as `Lw-Meta-<key>` headers. */
export const META_PREFIX = "Lw-Meta-";
const META_KEY = /^[a-z0-9_-]+$/;

/** Longest model, hook, request id or tenant name, in characters (code points). */
export const MAX_NAME_LENGTH = 256;

/** Everything a frame says about its tensor, without the tensor. */
export interface FrameMeta {
  model: string;
  hook: string;
  requestId: string;
  /** Position (in the request's token sequence) of the frame's first token. */
  position: number;
  /** Per-request frame counter, starting at 0, end marker included. */
  seq: number;
  dtype: Dtype;
  tokens: number;
  dModel: number;
  tokenIds?: number[];
  tokenText?: string[];
  phase?: "prefill" | "decode";
  tenant?: string;
  /**
   * Request metadata (`Lw-Meta-<key>` headers; keys lower-cased, `[a-z0-9_-]+`),
   * e.g. `{ app: "support-bot", region: "eu" }`, for policy exceptions.
   */
  meta?: Record<string, string>;
  traceparent?: string;
  tracestate?: string;
  endOfRequest: boolean;
}

/** A decoded frame. */
export interface Frame extends FrameMeta {
  /** [tokens, dModel] row-major; a view of the payload when dtype is f32 and aligned */
  data: Float32Array;
}

/** What {@linkcode encodeFrame} needs besides the tensor. */
export type EncodeFrameMeta = Omit<FrameMeta, "tokens" | "dModel" | "endOfRequest"> & {
  endOfRequest?: boolean;
};

/** Where a bad frame came from, for error messages. */
interface Where {
  subject?: string;
  requestId?: string;
}

/**
 * A frame (or the metadata given to the encoder) breaks the v1 format. Names
 * the header (or `payload`), what was expected and what was found, plus the
 * subject and request id when they are known.
 */
export class FrameError extends TypeError {
  /** Header name, `payload`, or the encoder argument at fault. */
  readonly field: string;
  readonly expected: string;
  /** What was found, as shown in the message (header values are quoted). */
  readonly found: string;
  readonly subject?: string;
  readonly requestId?: string;

  constructor(
    field: string,
    expected: string,
    found: string,
    where: Where = {},
    options?: ErrorOptions,
  ) {
    super(`${describeWhere(where)}: ${field}: expected ${expected}, found ${found}`, options);
    this.name = "FrameError";
    this.field = field;
    this.expected = expected;
    this.found = found;
    if (where.subject !== undefined) this.subject = where.subject;
    if (where.requestId !== undefined) this.requestId = where.requestId;
  }
}

function describeWhere(where: Where): string {
  let s = "frame";
  if (where.subject !== undefined) s += ` on '${where.subject}'`;
  if (where.requestId !== undefined) s += ` (request ${where.requestId})`;
  return s;
}

/** Quote a found header value for a message, bounded in length. */
function show(value: string | undefined): string {
  if (value === undefined) return "no header";
  const cut = value.length > 80 ? value.slice(0, 80) + "…" : value;
  return JSON.stringify(cut) + (cut === value ? "" : ` (${value.length} characters)`);
}

// ---------------------------------------------------------------------------
// Names, subjects and partitions

// deno-lint-ignore no-control-regex
const NOT_PRINTABLE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

/** Why `value` is not a valid name, or null when it is. */
function nameProblem(value: string): string | null {
  if (value.length === 0) return "empty";
  if (NOT_PRINTABLE.test(value)) return "contains a control character";
  if (/^\s|\s$/u.test(value)) return "has leading or trailing whitespace";
  let n = 0;
  for (const _ of value) n++;
  if (n > MAX_NAME_LENGTH) return `${n} characters`;
  return null;
}

const NAME_EXPECTED =
  `a non-empty printable name of at most ${MAX_NAME_LENGTH} characters, no surrounding whitespace`;

function checkName(field: string, value: unknown, where: Where): string {
  if (typeof value !== "string") {
    throw new FrameError(field, NAME_EXPECTED, typeof value, where);
  }
  const problem = nameProblem(value);
  if (problem !== null) {
    throw new FrameError(field, NAME_EXPECTED, `${show(value)} (${problem})`, where);
  }
  return value;
}

/**
 * Make a name one NATS subject token: every code point outside
 * `[A-Za-z0-9_-]` (dots, slashes, spaces, wildcards, non-ASCII) becomes `_`.
 * Distinct names can share a token (`blocks.6` and `blocks_6`): the subject
 * routes, the `Lw-Model`/`Lw-Hook` headers identify.
 */
export function subjectToken(field: string, name: string): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new FrameError(field, "a non-empty name", show(name), {});
  }
  return name.replace(/[^A-Za-z0-9_-]/gu, "_");
}

/**
 * The subject a tap publishes frames of `model`/`hook` on:
 * `latentwatch.tap.v1.<model>.<hook>.<partition>`. Each name becomes a single
 * subject token, every code point outside `[A-Za-z0-9_-]` replaced by `_`
 * (so `blocks.6.hook_resid_post` becomes `blocks_6_hook_resid_post`).
 * `partition` (default 0) is {@linkcode partitionOf} the request id.
 *
 * @example
 * ```ts
 * tapSubject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3);
 * // "latentwatch.tap.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3"
 * ```
 */
export function tapSubject(model: string, hook: string, partition = 0): string {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new RangeError(
      `tap subject: partition: expected a non-negative integer, found ${partition}`,
    );
  }
  return `latentwatch.tap.v1.${subjectToken("model", model)}.${
    subjectToken("hook", hook)
  }.${partition}`;
}

/**
 * The subscription filter matching every partition of `model`/`hook`:
 * `latentwatch.tap.v1.<model>.<hook>.*` (names sanitised as in
 * {@linkcode tapSubject}).
 *
 * @example
 * ```ts
 * tapSubjectFilter("gpt2", "blocks.6.hook_resid_post");
 * // "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.*"
 * ```
 */
export function tapSubjectFilter(model: string, hook: string): string {
  return `latentwatch.tap.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}.*`;
}

const utf8 = new TextEncoder();

/**
 * The partition a request's frames go to: FNV-1a (32-bit) of the request id's
 * UTF-8 bytes, modulo `partitions`. Stable across processes and languages, so
 * every frame of a request lands on the same subject and the same sidecar.
 *
 * @example
 * ```ts
 * partitionOf("a", 1000); // 220 (FNV-1a("a") = 0xe40c292c = 3826002220)
 * ```
 */
export function partitionOf(requestId: string, partitions: number): number {
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions: expected a positive integer, found ${partitions}`);
  }
  let h = 0x811c9dc5;
  for (const byte of utf8.encode(requestId)) {
    h = Math.imul(h ^ byte, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

// ---------------------------------------------------------------------------
// Encoding

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
  for (const [k, v] of Object.entries(headers)) {
    any = true;
    n += utf8.encode(k).length + utf8.encode(v).length + 4; // "\r\n" + ": "
  }
  return any ? n + 12 : 0; // "NATS/1.0" + "\r\n\r\n"
}

/**
 * JSON text of `strings`, ASCII only: every character outside printable ASCII
 * is written as a `\uXXXX` escape, so the text is a safe header value.
 */
function asciiJson(strings: string[]): string {
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
  const where: Where = { requestId: meta.requestId };
  if (!(data instanceof Float32Array) || data.length !== tokens * dModel) {
    throw new FrameError(
      "payload",
      `${tokens}·${dModel} = ${tokens * dModel} f32 values`,
      data instanceof Float32Array ? `${data.length}` : typeof data,
      where,
    );
  }
  let payload: Uint8Array;
  if (meta.dtype === "f32") {
    const bad = firstNonFinite(data);
    if (bad >= 0) throw nonFinite(data[bad], bad, dModel, meta.position, "", where);
    payload = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else {
    const bits = meta.dtype === "f16" ? f32ToF16(data) : f32ToBf16(data);
    const exp = meta.dtype === "f16" ? 0x7c00 : 0x7f80;
    for (let i = 0; i < bits.length; i++) {
      if ((bits[i] & exp) === exp) {
        const v = data[i];
        const note = Number.isFinite(v) ? ` (overflows ${meta.dtype} to ±Infinity)` : "";
        throw nonFinite(v, i, dModel, meta.position, note, where);
      }
    }
    payload = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  }
  return { headers, payload };
}

/** Index of the first NaN or ±Infinity, or -1. */
function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

function nonFinite(
  value: number,
  index: number,
  dModel: number,
  position: number,
  note: string,
  where: Where,
): FrameError {
  const token = Math.floor(index / dModel);
  return new FrameError(
    "payload",
    "finite values",
    `${value}${note} at token ${token} (position ${position + token}), element ${index % dModel}`,
    where,
  );
}

// ---------------------------------------------------------------------------
// Decoding

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** W3C Trace Context `traceparent` check (version 00 exactly; later versions by prefix). */
function validTraceparent(v: string): boolean {
  const m = TRACEPARENT.exec(v);
  if (!m) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return false;
  return !/^0+$/.test(traceId) && !/^0+$/.test(parentId);
}

const DIGITS = /^[0-9]+$/;

function parseCount(field: string, value: string | undefined, where: Where): number {
  const n = value !== undefined && DIGITS.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new FrameError(field, "a non-negative integer (decimal digits)", show(value), where);
  }
  return n;
}

/** Options of {@linkcode decodeFrame}. */
export interface DecodeFrameOptions {
  /** The width the frame must have (`Lw-Shape` D); any width when absent. */
  dModel?: number;
  /**
   * Header names the bus saw more than once with the same spelling (a
   * record holds one value per name): such a header is rejected like two
   * spellings of one header, when it is one the decoder reads.
   */
  repeated?: readonly string[];
}

/**
 * Decode and check one frame, strictly: any violation of format v1 throws a
 * {@linkcode FrameError} naming the header (or `payload`), what was expected
 * and what was found, with `subject` and the request id when known. Header
 * names match case-insensitively; unknown headers are ignored. An invalid
 * `traceparent` is dropped (with its `tracestate`), as W3C Trace Context
 * prescribes, instead of failing the frame. f32 payloads at a 4-aligned
 * offset decode to a zero-copy view; f16/bf16 are widened exactly.
 *
 * @example
 * ```ts
 * const frame = decodeFrame("latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0", {
 *   "Lw-Version": "1", "Lw-Model": "gpt2", "Lw-Hook": "blocks.6.hook_resid_post",
 *   "Lw-Request-Id": "r1", "Lw-Pos": "0", "Lw-Seq": "0", "Lw-Dtype": "bf16", "Lw-Shape": "1,2",
 * }, new Uint8Array([0x80, 0x3f, 0x00, 0xc0]), { dModel: 2 });
 * frame.data; // Float32Array [1, -2]
 * ```
 */
export function decodeFrame(
  subject: string,
  headers: Record<string, string>,
  payload: Uint8Array,
  expect: DecodeFrameOptions = {},
): Frame {
  const where: Where = { subject };
  const h = new Map<string, string>();
  const spelled = new Map<string, string[]>();
  for (const [k, v] of Object.entries(headers)) {
    const lk = k.toLowerCase();
    spelled.set(lk, [...(spelled.get(lk) ?? []), k]);
    h.set(lk, v);
  }
  // a header given twice with the same spelling counts like two spellings
  for (const k of expect.repeated ?? []) {
    const lk = k.toLowerCase();
    spelled.set(lk, [...(spelled.get(lk) ?? []), k]);
  }
  const get = (name: string): string | undefined => {
    const lk = name.toLowerCase();
    const names = spelled.get(lk);
    if (names !== undefined && names.length > 1) {
      throw new FrameError(name, "one header", `${names.length} (${names.join(", ")})`, where);
    }
    return h.get(lk);
  };

  const rawRequestId = get(HEADER.requestId);
  if (rawRequestId !== undefined && nameProblem(rawRequestId) === null) {
    where.requestId = rawRequestId;
  }
  const version = get(HEADER.version);
  if (version !== String(FRAME_VERSION)) {
    throw new FrameError(HEADER.version, `"${FRAME_VERSION}"`, show(version), where);
  }
  const requestId = decodeName(HEADER.requestId, rawRequestId, where);
  const model = decodeName(HEADER.model, get(HEADER.model), where);
  const hook = decodeName(HEADER.hook, get(HEADER.hook), where);
  const position = parseCount(HEADER.position, get(HEADER.position), where);
  const seq = parseCount(HEADER.seq, get(HEADER.seq), where);

  const rawDtype = get(HEADER.dtype);
  if (rawDtype !== "f32" && rawDtype !== "f16" && rawDtype !== "bf16") {
    throw new FrameError(HEADER.dtype, "one of f32, f16, bf16", show(rawDtype), where);
  }
  const dtype: Dtype = rawDtype;

  const rawShape = get(HEADER.shape);
  const shape = rawShape === undefined ? null : /^([0-9]+),([0-9]+)$/.exec(rawShape);
  const tokens = shape ? Number(shape[1]) : NaN;
  const dModel = shape ? Number(shape[2]) : NaN;
  if (!Number.isSafeInteger(tokens) || !Number.isSafeInteger(dModel) || dModel < 1) {
    throw new FrameError(
      HEADER.shape,
      `"T,D" with integers T ≥ 0 and D ≥ 1`,
      show(rawShape),
      where,
    );
  }
  if (expect.dModel !== undefined && dModel !== expect.dModel) {
    throw new FrameError(
      HEADER.shape,
      `D = ${expect.dModel} (the configured d_model)`,
      show(rawShape),
      where,
    );
  }

  const bytes = BYTES_PER_ELEMENT[dtype];
  const wanted = tokens * dModel * bytes;
  if (payload.byteLength !== wanted) {
    const how = payload.byteLength < wanted ? "truncated" : "too long";
    throw new FrameError(
      "payload",
      `${tokens}·${dModel}·${bytes} = ${wanted} bytes (${dtype}, shape ${rawShape})`,
      `${payload.byteLength} bytes (${how})`,
      where,
    );
  }

  const frame: Frame = {
    model,
    hook,
    requestId,
    position,
    seq,
    dtype,
    tokens,
    dModel,
    endOfRequest: false,
    data: new Float32Array(0),
  };

  const rawIds = get(HEADER.tokenIds);
  if (rawIds !== undefined) frame.tokenIds = decodeTokenIds(rawIds, tokens, where);
  const rawText = get(HEADER.tokenText);
  if (rawText !== undefined) frame.tokenText = decodeTokenText(rawText, tokens, where);

  const phase = get(HEADER.phase);
  if (phase !== undefined) {
    if (phase !== "prefill" && phase !== "decode") {
      throw new FrameError(HEADER.phase, `"prefill" or "decode"`, show(phase), where);
    }
    frame.phase = phase;
  }
  const tenant = get(HEADER.tenant);
  if (tenant !== undefined) frame.tenant = decodeName(HEADER.tenant, tenant, where);
  for (const [lk, names] of spelled) {
    if (!lk.startsWith(META_PREFIX.toLowerCase())) continue;
    const key = lk.slice(META_PREFIX.length);
    if (!META_KEY.test(key)) {
      throw new FrameError(names[0], "a metadata key of [a-z0-9_-]+", show(key), where);
    }
    (frame.meta ??= {})[key] = decodeName(names[0], get(names[0]), where);
  }

  const end = get(HEADER.end);
  if (end !== undefined) {
    if (end === "1" || end === "true") frame.endOfRequest = true;
    else if (end !== "0" && end !== "false") {
      throw new FrameError(HEADER.end, `"1" or "true" (or "0"/"false")`, show(end), where);
    }
  }

  const traceparent = get(HEADER.traceparent);
  if (traceparent !== undefined && validTraceparent(traceparent)) {
    frame.traceparent = traceparent;
    const tracestate = get(HEADER.tracestate);
    if (tracestate !== undefined) frame.tracestate = tracestate;
  }

  const data = toF32(payload, dtype);
  const bad = firstNonFinite(data);
  if (bad >= 0) throw nonFinite(data[bad], bad, dModel, position, "", where);
  frame.data = data;
  return frame;
}

function decodeName(field: string, value: string | undefined, where: Where): string {
  if (value === undefined) throw new FrameError(field, NAME_EXPECTED, show(value), where);
  return checkName(field, value, where);
}

function decodeTokenIds(raw: string, tokens: number, where: Where): number[] {
  const parts = raw === "" ? [] : raw.split(",");
  if (parts.length !== tokens) {
    throw new FrameError(
      HEADER.tokenIds,
      `${tokens} comma-separated token ids (one per token)`,
      `${parts.length}: ${show(raw)}`,
      where,
    );
  }
  const ids = new Array<number>(parts.length);
  for (let i = 0; i < parts.length; i++) {
    const n = DIGITS.test(parts[i]) ? Number(parts[i]) : NaN;
    if (!Number.isSafeInteger(n)) {
      throw new FrameError(
        HEADER.tokenIds,
        "non-negative integer token ids",
        `${show(parts[i])} at index ${i}`,
        where,
      );
    }
    ids[i] = n;
  }
  return ids;
}

function decodeTokenText(raw: string, tokens: number, where: Where): string[] {
  const expected = `a JSON array of ${tokens} strings (one per token)`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new FrameError(HEADER.tokenText, expected, `invalid JSON ${show(raw)}`, where, {
      cause: err,
    });
  }
  if (!Array.isArray(parsed) || parsed.length !== tokens) {
    const found = Array.isArray(parsed) ? `an array of ${parsed.length}` : show(raw);
    throw new FrameError(HEADER.tokenText, expected, found, where);
  }
  for (let i = 0; i < parsed.length; i++) {
    if (typeof parsed[i] !== "string") {
      throw new FrameError(HEADER.tokenText, expected, `${typeof parsed[i]} at index ${i}`, where);
    }
  }
  return parsed as string[];
}
