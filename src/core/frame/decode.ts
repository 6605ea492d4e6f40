/**
 * The strict decoder of frame format v1 (`docs/frame-format.md`): headers
 * and payload in, a checked {@linkcode Frame} out, or a
 * {@linkcode FrameError} naming the header at fault. Pure: imports nothing
 * outside `src/core`.
 *
 * @module
 */
import { BYTES_PER_ELEMENT, type Dtype, toF32 } from "../dtype.ts";
import { alignedF32Copy, releaseAlignedCopy, slabF32 } from "./aligned_copy.ts";
import {
  firstNonFinite,
  type Frame,
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
import { checkName, NAME_EXPECTED, nameProblem } from "./subjects.ts";

const DIGITS = /^[0-9]+$/;

/**
 * A frame's data until it is decoded: one shared empty array, since a new
 * one per frame cost more than the rest of the frame object (a new
 * `ArrayBuffer` takes about a microsecond here, `core/byte_slab.ts`).
 */
const NO_DATA = new Float32Array(0);

/**
 * Lower-case forms of the header names seen before: a tap sends the same
 * dozen names on every frame, so each is lowered once, not on every read.
 * Bounded: emptied when full.
 */
const lowered = new Map<string, string>();
const LOWERED_LIMIT = 512;
/** Longer names are lowered each time: the cache holds at most 512 names of 64 characters. */
const LOWERED_MAX_LENGTH = 64;

/** `name.toLowerCase()`, from {@linkcode lowered} when seen before. */
function lower(name: string): string {
  let lk = lowered.get(name);
  if (lk === undefined) {
    lk = name.toLowerCase();
    if (name.length > LOWERED_MAX_LENGTH) return lk;
    if (lowered.size >= LOWERED_LIMIT) lowered.clear();
    lowered.set(name, lk);
  }
  return lk;
}

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
  /**
   * The payload's bytes are reused once decoding returns (a borrowing bus
   * subscription): the values are always copied, into the shared slabs
   * (`aligned_copy.ts`), even from an aligned f32 payload.
   */
  copyData?: boolean;
}

/**
 * Decode and check one frame, strictly: any violation of format v1 throws a
 * {@linkcode FrameError} naming the header (or `payload`), what was expected
 * and what was found, with `subject` and the request id when known. Header
 * names match case-insensitively; unknown headers are ignored. An invalid
 * `traceparent` is dropped (with its `tracestate`), as W3C Trace Context
 * prescribes, instead of failing the frame. f32 payloads at a 4-aligned
 * offset decode to a zero-copy view (unless `copyData`); f16/bf16 are widened
 * exactly.
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
  // header names match case-insensitively; a name given in two spellings (or twice) is refused
  // when read. The common frame has each name once: one map, and the spellings listed only for
  // a clash.
  const h = new Map<string, string>();
  let clash: Map<string, string[]> | null = null;
  const spellings = (lk: string) => Object.keys(headers).filter((k) => lower(k) === lk);
  for (const k in headers) {
    if (!Object.hasOwn(headers, k)) continue;
    const lk = lower(k);
    if (h.has(lk)) (clash ??= new Map()).set(lk, spellings(lk));
    else h.set(lk, headers[k]);
  }
  // a header given twice with the same spelling counts like two spellings
  for (const k of expect.repeated ?? []) {
    const lk = lower(k);
    (clash ??= new Map()).set(lk, [...(clash.get(lk) ?? spellings(lk)), k]);
  }
  const get = (name: string): string | undefined => {
    const lk = lower(name);
    const names = clash?.get(lk);
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
    data: NO_DATA,
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
  const metaPrefix = lower(META_PREFIX);
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    const lk = lower(name);
    if (!lk.startsWith(metaPrefix)) continue;
    // a name given in several spellings is read once, by its first (get refuses it)
    const names = clash?.get(lk);
    if (names !== undefined && names[0] !== name) continue;
    const key = lk.slice(META_PREFIX.length);
    if (!META_KEY.test(key)) {
      throw new FrameError(name, "a metadata key of [a-z0-9_-]+", show(key), where);
    }
    (frame.meta ??= {})[key] = decodeName(name, get(name), where);
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

  // an unaligned f32 payload (most, from NATS), a payload whose bytes are reused and every
  // widened f16/bf16 one go into a shared slab, not a buffer of their own
  const data = dtype !== "f32"
    ? toF32(payload, dtype, slabF32(payload.byteLength / BYTES_PER_ELEMENT[dtype]))
    : payload.byteOffset % 4 === 0 && !expect.copyData
    ? toF32(payload, dtype)
    : alignedF32Copy(payload);
  const bad = firstNonFinite(data);
  if (bad >= 0) {
    releaseAlignedCopy(data); // a rejected frame's slab room goes back like a processed one's
    throw nonFinite(data[bad], bad, dModel, position, "", where);
  }
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

/**
 * Hand back the activations of decoded frames that nothing will read again
 * (`serve` does, once a batch is encoded, evaluated and its evidence
 * copied): an unaligned payload's copy is then reused for later frames
 * (`aligned_copy.ts`). Reading `frame.data` afterwards reads other frames'
 * values. Frames whose data is not such a copy are left alone.
 *
 * @example
 * ```ts
 * import type { Frame } from "./format.ts";
 * declare const batch: Frame[];
 * releaseFrameData(batch);
 * ```
 */
export function releaseFrameData(frames: readonly Frame[]): void {
  for (const f of frames) releaseAlignedCopy(f.data);
}
