/**
 * Read trace files (format v1, `docs/traces.md`) as a stream of records,
 * without loading the file: plain or gzip (detected by the magic bytes, not
 * the name). Anything that breaks the format, a truncated record included,
 * throws a {@linkcode TraceFormatError} with the record number and offset.
 *
 * @module
 */
import {
  checkSampling,
  TRACE_VERSION,
  type TraceEnd,
  TraceFormatError,
  type TraceHeader,
  type TraceRecord,
} from "./format.ts";
import { ByteSource, show } from "./byte_source.ts";

export { TraceFormatError };
export type { TraceEnd, TraceHeader, TraceRecord };

const dec = new TextDecoder("utf-8", { fatal: true });

/**
 * An open trace: the header is read on {@linkcode TraceReader.open}; iterate
 * for the frame records, once.
 *
 * @example
 * ```ts
 * const trace = await TraceReader.open("demo.trace.gz");
 * console.log(trace.header.model);
 * for await (const rec of trace) console.log(rec.record, rec.subject, rec.data.byteLength);
 * trace.end; // the end record ({frames, dropped, ...}), or null if the writer did not close cleanly
 * ```
 */
export class TraceReader implements AsyncIterable<TraceRecord> {
  readonly path: string;
  readonly header: TraceHeader;
  /** Whether the file is gzip-compressed. */
  readonly gzip: boolean;
  /** Size of the file on disk, in bytes (compressed size for gzip). */
  readonly fileSize: number;
  readonly #src: ByteSource;
  #end: TraceEnd | null = null;
  #record = 1;
  #used = false;

  private constructor(
    path: string,
    header: TraceHeader,
    gzip: boolean,
    size: number,
    src: ByteSource,
  ) {
    this.path = path;
    this.header = header;
    this.gzip = gzip;
    this.fileSize = size;
    this.#src = src;
  }

  /**
   * Open `path` and read its header record.
   *
   * @throws {TraceFormatError} when the file does not start with a v1 header record
   * @throws {Deno.errors.NotFound} when there is no such file
   */
  static async open(path: string): Promise<TraceReader> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const magic = new Uint8Array(2);
      const got = await file.read(magic);
      await file.seek(0, Deno.SeekMode.Start);
      const gzip = got === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
      const src = new ByteSource(path, file, gzip);
      const line = await src.line(0);
      if (line === null) {
        throw new TraceFormatError(path, 0, 0, "a trace header record", "an empty file");
      }
      const header = parseHeader(path, line);
      return new TraceReader(path, header, gzip, size, src);
    } catch (err) {
      try {
        file.close();
      } catch { /* already closed by the stream */ }
      throw err;
    }
  }

  /** The end record, once iteration reached it; `null` when the file has none (crash, or still being written). */
  get end(): TraceEnd | null {
    return this.#end;
  }

  /** Bytes of the file read so far (compressed bytes for gzip), for progress. */
  get bytesRead(): number {
    return this.#src.fileBytes;
  }

  /** Frame records read so far. */
  get records(): number {
    return this.#record - 1;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TraceRecord> {
    if (this.#used) throw new Error(`trace ${this.path}: a TraceReader can be iterated once`);
    this.#used = true;
    const src = this.#src;
    try {
      for (;;) {
        const offset = src.offset;
        const rec = this.#record;
        const line = await src.line(rec);
        if (line === null) return;
        if (this.#end) {
          throw new TraceFormatError(
            this.path,
            rec,
            offset,
            "nothing after the end record",
            show(line),
          );
        }
        let parsed: unknown;
        try {
          parsed = JSON.parse(dec.decode(line));
        } catch (err) {
          throw new TraceFormatError(this.path, rec, offset, "a JSON record line", show(line), {
            cause: err,
          });
        }
        if (isObject(parsed) && "end" in parsed) {
          this.#end = parseEnd(this.path, rec, offset, parsed.end);
          continue;
        }
        const { t, s, h, n } = checkFrameLine(this.path, rec, offset, parsed);
        const body = await src.bytes(n + 1, rec);
        if (body.byteLength < n + 1) {
          throw new TraceFormatError(
            this.path,
            rec,
            offset,
            `${n} payload bytes and a newline`,
            `${body.byteLength} bytes before the end of the file (truncated)`,
          );
        }
        if (body[n] !== 10) {
          throw new TraceFormatError(
            this.path,
            rec,
            offset,
            `a newline after the ${n} payload bytes`,
            `byte 0x${body[n].toString(16).padStart(2, "0")}`,
          );
        }
        this.#record++;
        yield {
          record: rec,
          offset,
          receivedAt: t,
          subject: s,
          headers: h,
          data: body.subarray(0, n),
        };
      }
    } finally {
      await src.close();
    }
  }

  /** Stop reading and close the file (iteration to the end closes it too). */
  async close(): Promise<void> {
    await this.#src.close();
  }
}

/**
 * Every frame record of the trace at `path`, streamed.
 *
 * @example
 * ```ts
 * import { decodeFrame } from "../core/frame/decode.ts";
 * for await (const rec of readTrace("demo.trace.gz")) {
 *   const frame = decodeFrame(rec.subject, rec.headers, rec.data);
 * }
 * ```
 */
export async function* readTrace(path: string): AsyncIterable<TraceRecord> {
  yield* await TraceReader.open(path);
}

/**
 * Only the header record of the trace at `path`.
 *
 * @example
 * ```ts
 * const { model, hook, sampling } = await readTraceHeader("demo.trace.gz");
 * ```
 */
export async function readTraceHeader(path: string): Promise<TraceHeader> {
  const r = await TraceReader.open(path);
  await r.close();
  return r.header;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseHeader(path: string, line: Uint8Array): TraceHeader {
  let h: unknown;
  try {
    h = JSON.parse(dec.decode(line));
  } catch {
    h = undefined;
  }
  const expected =
    `a latentwatch trace v${TRACE_VERSION} header record ({"latentwatch_trace": 1, ...})`;
  if (!isObject(h) || !("latentwatch_trace" in h)) {
    throw new TraceFormatError(path, 0, 0, expected, show(line));
  }
  if (h.latentwatch_trace !== TRACE_VERSION) {
    throw new TraceFormatError(
      path,
      0,
      0,
      `trace format version ${TRACE_VERSION}`,
      `version ${JSON.stringify(h.latentwatch_trace)}`,
    );
  }
  for (const key of ["monitor", "model", "hook", "created"]) {
    if (typeof h[key] !== "string") {
      throw new TraceFormatError(
        path,
        0,
        0,
        `header field "${key}" (a string)`,
        show(JSON.stringify(h[key]) ?? "nothing"),
      );
    }
  }
  let sampling;
  try {
    sampling = checkSampling(isObject(h.sampling) ? h.sampling : {});
  } catch (err) {
    throw new TraceFormatError(path, 0, 0, "a valid sampling", (err as Error).message);
  }
  return { ...(h as unknown as TraceHeader), sampling };
}

function parseEnd(path: string, rec: number, offset: number, end: unknown): TraceEnd {
  if (
    !isObject(end) || typeof end.frames !== "number" || typeof end.dropped !== "number" ||
    typeof end.sampled_out !== "number"
  ) {
    throw new TraceFormatError(
      path,
      rec,
      offset,
      "an end record {frames, dropped, sampled_out, closed}",
      show(JSON.stringify(end)),
    );
  }
  return end as unknown as TraceEnd;
}

function checkFrameLine(
  path: string,
  rec: number,
  offset: number,
  v: unknown,
): { t: number; s: string; h: Record<string, string>; n: number } {
  const bad = (expected: string, found: unknown) =>
    new TraceFormatError(path, rec, offset, expected, show(JSON.stringify(found) ?? "nothing"));
  if (!isObject(v)) throw bad(`a frame record {"t", "s", "h", "n"}`, v);
  if (typeof v.t !== "number" || !Number.isFinite(v.t)) throw bad(`"t": a receive time in ms`, v.t);
  if (typeof v.s !== "string") throw bad(`"s": the subject`, v.s);
  if (!isObject(v.h) || Object.values(v.h).some((x) => typeof x !== "string")) {
    throw bad(`"h": an object of string headers`, v.h);
  }
  if (!Number.isSafeInteger(v.n) || (v.n as number) < 0) {
    throw bad(`"n": a payload byte count`, v.n);
  }
  return { t: v.t, s: v.s, h: v.h as Record<string, string>, n: v.n as number };
}
