/**
 * The spool's on-disk record format (`./spool.ts`): every record framed as
 * `magic "LWS1" | length u32 LE | CRC-32 (IEEE) of payload u32 LE | payload`,
 * scanned back skipping torn and corrupt records, and the payload of a
 * spooled alert (`id length u16 LE | id | first attempt ms f64 LE | data`).
 * Also used by the request checkpoints (`src/serve/checkpoints.ts`).
 *
 * @module
 */
import type { SpoolRecord } from "./spool.ts";

/** A spool file or option is not what it must be. */
export class SpoolError extends Error {
  constructor(readonly path: string, expected: string, found: string) {
    super(`spool ${path}: expected ${expected}, found ${found}`);
    this.name = "SpoolError";
  }
}

export const MAGIC = [0x4c, 0x57, 0x53, 0x31]; // "LWS1"
export const HEADER = 12;
/** Largest record payload accepted on load; a bigger length field is damage. */
export const MAX_RECORD = 64 * 1024 * 1024;
export const SEGMENT_RE = /^seg-(\d{16})\.(log|ack)$/;

export const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE 802.3, as zlib and PNG use).
 *
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xcbf43926
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Frame `payload` as one spool record (magic, length, CRC, payload).
 *
 * @example
 * ```ts
 * frameRecord(new Uint8Array([1, 2])).length; // 14
 * ```
 */
export function frameRecord(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER + payload.length);
  out.set(payload, HEADER);
  sealRecord(out, new DataView(out.buffer), payload.length);
  return out;
}

/** Write the header (magic, length, CRC) of the `length`-byte payload already at `out[HEADER]`. */
function sealRecord(out: Uint8Array, view: DataView, length: number): void {
  out.set(MAGIC, 0);
  view.setUint32(4, length, true);
  view.setUint32(8, crc32(out.subarray(HEADER, HEADER + length)), true);
}

/**
 * Frames text as spool records in one buffer reused from record to record,
 * for a writer that writes each record before it frames the next
 * (synchronously): a record framed per batch then leaves no buffer behind
 * for the collector (docs/performance.md, "One buffer per batch"). The bytes
 * are those of `frameRecord(new TextEncoder().encode(text))`. The buffer
 * keeps the size of the longest record framed (records are per batch and
 * small; a compaction's rewrite frames its own).
 *
 * @example
 * ```ts
 * const framer = new RecordFramer();
 * framer.frame('{"s":{}}').length; // 20: the 12-byte header and 8 bytes of UTF-8
 * ```
 */
export class RecordFramer {
  #buf = new Uint8Array(1024);
  #view = new DataView(this.#buf.buffer);

  /** `text` in UTF-8 as one record: a view valid until the next call. */
  frame(text: string): Uint8Array {
    // each UTF-16 code unit takes at most 3 bytes of UTF-8
    const most = HEADER + 3 * text.length;
    if (this.#buf.length < most) {
      this.#buf = new Uint8Array(Math.max(most, 2 * this.#buf.length));
      this.#view = new DataView(this.#buf.buffer);
    }
    const { written } = enc.encodeInto(text, this.#buf.subarray(HEADER));
    sealRecord(this.#buf, this.#view, written);
    return this.#buf.subarray(0, HEADER + written);
  }
}

/** Records found in one file's bytes, with what had to be skipped. */
export interface Scan {
  records: { offset: number; payload: Uint8Array }[];
  torn: number;
  corrupt: number;
}

export function magicAt(b: Uint8Array, i: number): boolean {
  return b[i] === MAGIC[0] && b[i + 1] === MAGIC[1] && b[i + 2] === MAGIC[2] &&
    b[i + 3] === MAGIC[3];
}

/** Is there a whole, valid record at `i`? "torn" when it runs past the end. */
export function recordAt(b: Uint8Array, i: number): number | "torn" | "bad" {
  if (b.length - i < HEADER) return magicPrefix(b, i) ? "torn" : "bad";
  if (!magicAt(b, i)) return "bad";
  const v = new DataView(b.buffer, b.byteOffset + i, HEADER);
  const len = v.getUint32(4, true);
  if (len > MAX_RECORD) return "bad";
  if (i + HEADER + len > b.length) return "torn";
  const crc = crc32(b.subarray(i + HEADER, i + HEADER + len));
  return crc === v.getUint32(8, true) ? len : "bad";
}

export function magicPrefix(b: Uint8Array, i: number): boolean {
  for (let k = 0; i + k < b.length && k < 4; k++) if (b[i + k] !== MAGIC[k]) return false;
  return true;
}

/**
 * Split a spool file's bytes into records, skipping damage: a record cut
 * short at the end counts as torn; damage in the middle is skipped up to the
 * next valid record and counts as one corrupt region.
 */
export function scan(b: Uint8Array): Scan {
  const out: Scan = { records: [], torn: 0, corrupt: 0 };
  let i = 0;
  while (i < b.length) {
    const r = recordAt(b, i);
    if (typeof r === "number") {
      out.records.push({ offset: i, payload: b.subarray(i + HEADER, i + HEADER + r) });
      i += HEADER + r;
      continue;
    }
    // resynchronise: the next magic that starts a whole valid record
    let next = -1;
    for (let j = i + 1; j + 4 <= b.length; j++) {
      if (magicAt(b, j) && typeof recordAt(b, j) === "number") {
        next = j;
        break;
      }
    }
    if (next < 0) {
      // nothing valid follows: a torn final write, or damage up to the end
      if (r === "torn") out.torn++;
      else out.corrupt++;
      break;
    }
    out.corrupt++;
    i = next;
  }
  return out;
}

/**
 * The payloads of the whole records framed by {@linkcode frameRecord} in
 * `bytes`, skipping damage: a record cut short at the end counts as torn,
 * damage in the middle is skipped up to the next valid record (corrupt).
 *
 * @example
 * ```ts
 * const bytes = frameRecord(new Uint8Array([7]));
 * scanRecords(bytes).records.length; // 1
 * scanRecords(bytes.subarray(0, 5)).torn; // 1
 * ```
 */
export function scanRecords(
  bytes: Uint8Array,
): { records: Uint8Array[]; torn: number; corrupt: number } {
  const s = scan(bytes);
  return { records: s.records.map((r) => r.payload), torn: s.torn, corrupt: s.corrupt };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodePut(rec: SpoolRecord): Uint8Array {
  const id = enc.encode(rec.id);
  if (id.length > 0xffff) {
    throw new SpoolError("(record)", "an id of at most 65535 bytes", `${id.length} bytes`);
  }
  const out = new Uint8Array(2 + id.length + 8 + rec.data.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, id.length, true);
  out.set(id, 2);
  v.setFloat64(2 + id.length, rec.firstAttemptMs, true);
  out.set(rec.data, 2 + id.length + 8);
  return out;
}

export function decodePut(
  payload: Uint8Array,
): { id: string; firstAttemptMs: number; dataAt: number } {
  const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const idLen = v.getUint16(0, true);
  return {
    id: dec.decode(payload.subarray(2, 2 + idLen)),
    firstAttemptMs: v.getFloat64(2 + idLen, true),
    dataAt: 2 + idLen + 8,
  };
}
