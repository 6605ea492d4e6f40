/**
 * Frame format v1: how a tap puts one request's activations on the bus.
 *
 * Metadata travels in NATS headers, the tensor as raw little-endian bytes,
 * `[tokens, dModel]` row-major, in f32, f16 or bf16. Several tokens go in one
 * frame; a frame with `Lw-End` marks the end of a request. The format is
 * written down for implementers of taps in other languages in
 * `docs/frame-format.md`. This module holds what the format is: its version,
 * header names, the frame types, {@linkcode FrameError}, and the checks the
 * encoder (`encode.ts`) and the strict decoder (`decode.ts`) share. Pure:
 * imports nothing outside `src/core`.
 *
 * @module
 */
import type { Dtype } from "../dtype.ts";
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
/** What a metadata key (`Lw-Meta-<key>`) may be. */
export const META_KEY = /^[a-z0-9_-]+$/;

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
export interface Where {
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
export function show(value: string | undefined): string {
  if (value === undefined) return "no header";
  const cut = value.length > 80 ? value.slice(0, 80) + "…" : value;
  return JSON.stringify(cut) + (cut === value ? "" : ` (${value.length} characters)`);
}

/** Index of the first NaN or ±Infinity, or -1. */
export function firstNonFinite(data: Float32Array): number {
  // Fast path without a branch per value: f32 values summed in f64 cannot overflow (2³² values of
  // at most 3.4·10³⁸ stay below 1.5·10⁴⁸), and NaN or ±Infinity anywhere makes the sum NaN or
  // ±Infinity; so the sum is finite exactly when every value is.
  let a = 0, b = 0, c = 0, d = 0;
  const n = data.length, n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    a += data[i];
    b += data[i + 1];
    c += data[i + 2];
    d += data[i + 3];
  }
  for (let i = n4; i < n; i++) a += data[i];
  const sum = a + b + c + d;
  if (sum - sum === 0) return -1;
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

/** The error for a non-finite value at flat `index` of a `[tokens, dModel]` tensor. */
export function nonFinite(
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

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** W3C Trace Context `traceparent` check (version 00 exactly; later versions by prefix). */
export function validTraceparent(v: string): boolean {
  const m = TRACEPARENT.exec(v);
  if (!m) return false;
  const [, version, traceId, parentId, , rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return false;
  return !/^0+$/.test(traceId) && !/^0+$/.test(parentId);
}
