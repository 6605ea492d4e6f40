/**
 * Trace format v1: recorded tap frames, exactly as received, in one file.
 * Shared by the writer ({@linkcode ./writer.ts}) and the reader
 * ({@linkcode ./reader.ts}); the format is documented in `docs/traces.md`.
 *
 * A trace is a sequence of records. Each record starts with one line of
 * JSON (UTF-8, no raw newline inside, ends with `\n`):
 *
 * - the first record is the **header**: `{"latentwatch_trace": 1, "monitor", "model", "hook", "created", "sampling"}`;
 * - each **frame** record is `{"t": <received, ms since epoch>, "s": <subject>, "h": {<headers>}, "n": <payload bytes>}`
 *   followed by exactly `n` raw payload bytes and one `\n`;
 * - the last record, written on a clean close, is the **end** record
 *   `{"end": {"frames", "dropped", "sampled_out", "closed"}}`.
 *
 * The whole file may be gzip-compressed (detected by its magic bytes, named
 * `.gz` by convention).
 *
 * @module
 */

/** The trace format version this code writes and the only one it reads. */
export const TRACE_VERSION = 1;

/** How a writer chooses which requests to record. Both act on whole requests. */
export interface TraceSampling {
  /** Keep one request in `every`: the 1st, (every+1)-th, ... new request id seen. */
  every?: number;
  /** Keep this fraction (0..1) of requests, chosen by a hash of the request id (stable across sidecars and restarts). */
  requests?: number;
}

/** The header record: what the trace is a recording of. */
export interface TraceHeader {
  /** Format version, {@linkcode TRACE_VERSION}. */
  latentwatch_trace: number;
  /** Monitor that recorded it (or `demo`). */
  monitor: string;
  model: string;
  hook: string;
  /** ISO 8601 time the file was created. */
  created: string;
  /** Sampling in force while recording; `{}` means every frame. */
  sampling: TraceSampling;
  /** Free-form extra fields a writer wants to keep (tool versions, notes). */
  meta?: Record<string, string>;
}

/** One recorded frame. */
export interface TraceRecord {
  /** 1-based record number in the file (the header is record 0). */
  record: number;
  /** Byte offset of the record's JSON line in the (decompressed) trace. */
  offset: number;
  /** When the sidecar received the frame, in milliseconds since the Unix epoch. */
  receivedAt: number;
  subject: string;
  /** Headers exactly as received (names with their case). */
  headers: Record<string, string>;
  /** The payload bytes exactly as received. */
  data: Uint8Array;
}

/** The end record written by a clean close. */
export interface TraceEnd {
  /** Frame records written. */
  frames: number;
  /** Frames not recorded because the disk did not keep up (or failed). */
  dropped: number;
  /** Frames left out by sampling. */
  sampled_out: number;
  /** ISO 8601 time the file was closed. */
  closed: string;
}

/**
 * A trace file breaks format v1, or ends early. Names the file, the record
 * number and byte offset (in the decompressed stream for gzip files), what
 * was expected and what was found.
 */
export class TraceFormatError extends Error {
  readonly path: string;
  readonly record: number;
  readonly offset: number;
  readonly expected: string;
  readonly found: string;

  constructor(
    path: string,
    record: number,
    offset: number,
    expected: string,
    found: string,
    options?: ErrorOptions,
  ) {
    super(
      `${path}: record ${record} (byte ${offset}): expected ${expected}, found ${found}`,
      options,
    );
    this.name = "TraceFormatError";
    this.path = path;
    this.record = record;
    this.offset = offset;
    this.expected = expected;
    this.found = found;
  }
}

/** Bad writer options or header fields. */
export class TraceConfigError extends RangeError {
  constructor(field: string, expected: string, found: unknown) {
    super(`trace ${field}: expected ${expected}, found ${JSON.stringify(found)}`);
    this.name = "TraceConfigError";
  }
}

/** Check a sampling spec; returns it normalised (no undefined keys). */
export function checkSampling(s: TraceSampling | undefined): TraceSampling {
  const out: TraceSampling = {};
  if (s?.every !== undefined) {
    if (!Number.isSafeInteger(s.every) || s.every < 1) {
      throw new TraceConfigError("sampling.every", "an integer ≥ 1", s.every);
    }
    out.every = s.every;
  }
  if (s?.requests !== undefined) {
    if (!(typeof s.requests === "number" && s.requests >= 0 && s.requests <= 1)) {
      throw new TraceConfigError("sampling.requests", "a fraction in 0..1", s.requests);
    }
    out.requests = s.requests;
  }
  return out;
}

/**
 * Where a request id falls in [0, 1) for `sampling.requests`: FNV-1a-32 of
 * `"lw-sample:" + id` over 2^32. Salted so that it is independent of the
 * frame partition (FNV-1a of the bare id modulo the partition count).
 *
 * @example
 * ```ts
 * sampleFraction("req-1") < 0.1; // the same answer on every sidecar, every run
 * ```
 */
export function sampleFraction(requestId: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(`lw-sample:${requestId}`)) {
    h = Math.imul(h ^ byte, 0x01000193);
  }
  return (h >>> 0) / 2 ** 32;
}

/** Case-insensitive header lookup (frame headers are matched that way). */
export function headerValue(headers: Record<string, string>, name: string): string | undefined {
  if (name in headers) return headers[name];
  const lower = name.toLowerCase();
  for (const k in headers) if (k.toLowerCase() === lower) return headers[k];
  return undefined;
}
