/**
 * A trace file's bytes, decompressed when gzip, behind a cursor that hands
 * out lines and exact byte counts: what `TraceReader` reads records
 * from (`reader.ts`). Memory stays at about one record.
 *
 * @module
 */
import { TraceFormatError } from "./format.ts";

/** A JSON line longer than this is not a record line (a corrupt file, not a huge header set). */
const MAX_LINE = 16 << 20;

/**
 * At most 80 characters of something found where it should not be, quoted.
 *
 * @example
 * ```ts
 * show("x".repeat(100)).length; // 83: 80 characters, the ellipsis and two quotes
 * ```
 */
export function show(bytes: Uint8Array | string): string {
  const s = typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes.subarray(0, 120));
  return JSON.stringify(s.length > 80 ? s.slice(0, 80) + "…" : s);
}

/**
 * The file's bytes (decompressed), with a cursor: lines and exact byte
 * counts, refilled chunk by chunk so memory stays at about one record.
 *
 * @example
 * ```ts
 * const file = await Deno.open("demo.trace");
 * const src = new ByteSource("demo.trace", file, false);
 * const header = await src.line(0); // the header record's JSON, without its newline
 * await src.close();
 * ```
 */
export class ByteSource {
  readonly #path: string;
  readonly #file: Deno.FsFile;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = new Uint8Array(0);
  #start = 0;
  #eof = false;
  #closed = false;
  /** Decompressed bytes consumed before `#buf[#start]`. */
  #consumed = 0;
  fileBytes = 0;

  constructor(path: string, file: Deno.FsFile, gzip: boolean) {
    this.#path = path;
    this.#file = file;
    // count file bytes on the way in, for progress on compressed files
    let stream: ReadableStream<Uint8Array> = file.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform: (chunk, ctl) => {
          this.fileBytes += chunk.byteLength;
          ctl.enqueue(chunk);
        },
      }),
    );
    if (gzip) {
      stream = stream.pipeThrough(
        new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
      );
    }
    this.#reader = stream.getReader();
  }

  /** Offset of the cursor in the (decompressed) stream. */
  get offset(): number {
    return this.#consumed;
  }

  /** Read one more chunk; false at the end of the stream. */
  async #fill(record: number): Promise<boolean> {
    if (this.#eof) return false;
    let r: ReadableStreamReadResult<Uint8Array>;
    try {
      r = await this.#reader.read();
    } catch (err) {
      throw new TraceFormatError(
        this.#path,
        record,
        this.#consumed,
        "a readable (complete) gzip stream",
        `${(err as Error).message} (truncated or corrupt file)`,
        { cause: err },
      );
    }
    if (r.done) {
      this.#eof = true;
      return false;
    }
    const rest = this.#buf.byteLength - this.#start;
    const next = new Uint8Array(rest + r.value.byteLength);
    next.set(this.#buf.subarray(this.#start), 0);
    next.set(r.value, rest);
    this.#buf = next;
    this.#start = 0;
    return true;
  }

  /** The next line (without its `\n`), or null at a clean end of the stream. */
  async line(record: number): Promise<Uint8Array | null> {
    let from = this.#start;
    for (;;) {
      const nl = this.#buf.indexOf(10, from);
      if (nl >= 0) {
        const line = this.#buf.subarray(this.#start, nl);
        this.#consumed += nl + 1 - this.#start;
        this.#start = nl + 1;
        return line;
      }
      from = this.#buf.byteLength;
      const pending = this.#buf.byteLength - this.#start;
      if (pending > MAX_LINE) {
        throw new TraceFormatError(
          this.#path,
          record,
          this.#consumed,
          `a record line under ${MAX_LINE} bytes`,
          `${pending} bytes without a newline`,
        );
      }
      if (!await this.#fill(record)) {
        if (pending === 0) return null;
        throw new TraceFormatError(
          this.#path,
          record,
          this.#consumed,
          "a record line ending in a newline",
          `${pending} bytes before the end of the file (truncated): ${
            show(this.#buf.subarray(this.#start))
          }`,
        );
      }
      // #fill moved the pending bytes to the front: search only the new ones
      from = pending;
    }
  }

  /** Up to `n` bytes (fewer only at the end of the stream). */
  async bytes(n: number, record: number): Promise<Uint8Array> {
    while (this.#buf.byteLength - this.#start < n && await this.#fill(record)) { /* more */ }
    const end = Math.min(this.#start + n, this.#buf.byteLength);
    const out = this.#buf.subarray(this.#start, end);
    this.#consumed += end - this.#start;
    this.#start = end;
    return out;
  }

  /** Stop reading and close the file; idempotent, and quiet when the stream already failed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#reader.cancel();
    } catch { /* the stream already failed */ }
    try {
      this.#file.close();
    } catch { /* closed when the stream ended */ }
  }
}
