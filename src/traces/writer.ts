/**
 * Record tap frames to a trace file (format v1, `docs/traces.md`) while
 * serving: {@linkcode TraceWriter.write} never blocks and never throws for
 * I/O; records go to a bounded in-memory queue that a background loop
 * writes out, and frames that do not fit are dropped and counted.
 *
 * @module
 */
import {
  checkSampling,
  headerValue,
  sampleFraction,
  TRACE_VERSION,
  TraceConfigError,
  type TraceEnd,
  type TraceHeader,
  type TraceSampling,
} from "./format.ts";
import type { RedactOptions } from "../core/redact.ts";
import { redactTokenTextHeader } from "./redact.ts";

/** What {@linkcode TraceWriter.create} needs to write the header record. */
export interface TraceHeaderInit {
  monitor: string;
  model: string;
  hook: string;
  /** Which requests to record (default: all). */
  sampling?: TraceSampling;
  /** Defaults to now. */
  created?: string;
  meta?: Record<string, string>;
}

/** Options of {@linkcode TraceWriter.create}. */
export interface TraceWriterOptions {
  /** gzip the file; default: when the path ends in `.gz`. */
  gzip?: boolean;
  /** Bytes of records waiting for the disk before frames are dropped (default 64 MiB). */
  maxBufferBytes?: number;
  /** Called on every dropped frame with the reason and the running total of drops. */
  onDrop?: (reason: "buffer_full" | "write_error", dropped: number) => void;
  /**
   * Redaction of the frames' token text (`record.redact`; `./redact.ts`)
   * before they are written. @default { mode: "none" }
   */
  redact?: RedactOptions;
}

/** A message as the bus delivered it. */
export interface TraceMessage {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
}

/** Counters of a {@linkcode TraceWriter}. */
export interface TraceWriterStats {
  /** Frame records accepted into the file. */
  frames: number;
  /** Frames lost because the queue was full or the file failed. */
  dropped: number;
  /** Frames left out by sampling. */
  sampledOut: number;
  /** Bytes (uncompressed) handed to the file so far. */
  bytes: number;
  /** Bytes waiting in the queue. */
  queuedBytes: number;
}

/** Bytes in an ordinary (not shared) buffer, as file streams take them. */
type Bytes = Uint8Array<ArrayBuffer>;

const enc = new TextEncoder();
/** Requests whose `every` decision is remembered until their end marker. */
const MAX_TRACKED_REQUESTS = 100_000;
/** Chunks handed to the file at once: big enough to amortise the syscall. */
const WRITE_CHUNK = 1 << 20;

/**
 * Appends frames to a trace file.
 *
 * @example
 * ```ts
 * // the bus subscription serve records from
 * declare const subscribe: (onMessage: (msg: TraceMessage) => void) => void;
 * const w = await TraceWriter.create(".latentwatch/serve.trace.gz", {
 *   monitor: "demo", model: "sim-gpt", hook: "blocks.6.hook_resid_post",
 *   sampling: { requests: 0.1 },
 * });
 * subscribe((msg) => w.write(msg));
 * // ...
 * await w.close(); // writes the end record with the drop counts
 * ```
 */
export class TraceWriter {
  readonly path: string;
  readonly header: TraceHeader;
  readonly #sink: WritableStreamDefaultWriter<Bytes>;
  readonly #done: Promise<void>;
  readonly #max: number;
  readonly #onDrop?: TraceWriterOptions["onDrop"];
  readonly #redact?: RedactOptions;
  /** Records waiting for the disk; `frame` marks frame records (for counting losses). */
  #queue: { bytes: Bytes; frame: boolean }[] = [];
  #queued = 0;
  #pump: Promise<void> | null = null;
  #error: Error | null = null;
  #closed = false;
  #frames = 0;
  #dropped = 0;
  #sampledOut = 0;
  #bytes = 0;
  /** `every` sampling: request id → kept?, in order of first frame. */
  #decisions = new Map<string, boolean>();
  #requestsSeen = 0;

  private constructor(
    path: string,
    header: TraceHeader,
    sink: WritableStreamDefaultWriter<Bytes>,
    done: Promise<void>,
    opts: TraceWriterOptions,
  ) {
    this.path = path;
    this.header = header;
    this.#sink = sink;
    this.#done = done;
    this.#max = opts.maxBufferBytes ?? 64 << 20;
    this.#onDrop = opts.onDrop;
    if (opts.redact && opts.redact.mode !== "none") this.#redact = opts.redact;
  }

  /**
   * Create (or truncate) `path`, creating its folder, and write the header
   * record.
   *
   * @throws {TraceConfigError} for bad sampling or buffer options
   */
  static async create(
    path: string,
    init: TraceHeaderInit,
    opts: TraceWriterOptions = {},
  ): Promise<TraceWriter> {
    const header: TraceHeader = {
      latentwatch_trace: TRACE_VERSION,
      monitor: init.monitor,
      model: init.model,
      hook: init.hook,
      created: init.created ?? new Date().toISOString(),
      sampling: checkSampling(init.sampling),
      ...(init.meta ? { meta: init.meta } : {}),
    };
    if (opts.maxBufferBytes !== undefined && !(opts.maxBufferBytes >= 1)) {
      throw new TraceConfigError("maxBufferBytes", "a positive byte count", opts.maxBufferBytes);
    }
    const slash = path.lastIndexOf("/");
    if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    const gzip = opts.gzip ?? path.endsWith(".gz");
    let sink: WritableStreamDefaultWriter<Bytes>;
    let done: Promise<void>;
    if (gzip) {
      const cs = new CompressionStream("gzip");
      done = cs.readable.pipeTo(file.writable);
      sink = cs.writable.getWriter() as WritableStreamDefaultWriter<Bytes>;
    } else {
      sink = file.writable.getWriter();
      done = Promise.resolve();
    }
    const w = new TraceWriter(path, header, sink, done, opts);
    w.#enqueue(enc.encode(JSON.stringify(header) + "\n"), false);
    return w;
  }

  /** Counters so far. */
  get stats(): TraceWriterStats {
    return {
      frames: this.#frames,
      dropped: this.#dropped,
      sampledOut: this.#sampledOut,
      bytes: this.#bytes,
      queuedBytes: this.#queued,
    };
  }

  /**
   * Record one message (unless sampling leaves its request out). Never
   * blocks: the record is queued; when the queue is over its bound, or the
   * file has failed, the frame is dropped, counted and reported to `onDrop`.
   * `receivedAt` defaults to now (ms since the epoch).
   *
   * @throws {Error} after {@linkcode TraceWriter.close}
   */
  write(msg: TraceMessage, receivedAt: number = Date.now()): void {
    if (this.#closed) throw new Error(`trace ${this.path}: write after close`);
    if (!this.#sampled(msg.headers)) {
      this.#sampledOut++;
      return;
    }
    if (this.#error) return this.#drop("write_error");
    const headers = this.#redact ? redactTokenTextHeader(msg.headers, this.#redact) : msg.headers;
    const line = enc.encode(
      JSON.stringify({ t: receivedAt, s: msg.subject, h: headers, n: msg.data.byteLength }) +
        "\n",
    );
    const size = line.byteLength + msg.data.byteLength + 1;
    if (this.#queued + size > this.#max) return this.#drop("buffer_full");
    this.#frames++;
    // one allocation per record; it also copies the payload, which a bus may
    // reuse once the handler returns
    const rec = new Uint8Array(size);
    rec.set(line, 0);
    rec.set(msg.data, line.byteLength);
    rec[size - 1] = 10;
    this.#enqueue(rec, true);
  }

  /**
   * Write what is queued and the end record, and close the file. Rejects
   * with the first write error, if the file failed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const end: TraceEnd = {
      frames: this.#frames,
      dropped: this.#dropped,
      sampled_out: this.#sampledOut,
      closed: new Date().toISOString(),
    };
    if (!this.#error) this.#enqueue(enc.encode(JSON.stringify({ end }) + "\n"), false);
    this.#closed = true;
    while (this.#pump) await this.#pump;
    try {
      await this.#sink.close();
      await this.#done;
    } catch (err) {
      this.#error ??= err as Error;
    }
    if (this.#error) throw this.#error;
  }

  #drop(reason: "buffer_full" | "write_error"): void {
    this.#dropped++;
    this.#onDrop?.(reason, this.#dropped);
  }

  #sampled(headers: Record<string, string>): boolean {
    const { every, requests } = this.header.sampling;
    if (every === undefined && requests === undefined) return true;
    const id = headerValue(headers, "Lw-Request-Id");
    // a frame without a request id is recorded: replay then reports it as the sidecar did
    if (id === undefined) return true;
    if (requests !== undefined && !(sampleFraction(id) < requests)) return false;
    if (every === undefined) return true;
    let keep = this.#decisions.get(id);
    if (keep === undefined) {
      keep = this.#requestsSeen++ % every === 0;
      this.#decisions.set(id, keep);
      if (this.#decisions.size > MAX_TRACKED_REQUESTS) {
        // an aborted request never sends its end marker: forget the oldest
        const [oldest] = this.#decisions.keys();
        this.#decisions.delete(oldest);
      }
    }
    const end = headerValue(headers, "Lw-End");
    if (end === "1" || end === "true") this.#decisions.delete(id);
    return keep;
  }

  #enqueue(bytes: Bytes, frame: boolean): void {
    this.#queue.push({ bytes, frame });
    this.#queued += bytes.byteLength;
    this.#pump ??= this.#run();
  }

  /** Records that will never reach the file: their frames count as dropped, not written. */
  #lose(items: { frame: boolean }[]): void {
    for (const it of items) {
      if (!it.frame) continue;
      this.#frames--;
      this.#drop("write_error");
    }
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#error) {
        // gather up to WRITE_CHUNK bytes into one write
        let n = 0;
        let k = 0;
        while (
          k < this.#queue.length && (k === 0 || n + this.#queue[k].bytes.byteLength <= WRITE_CHUNK)
        ) {
          n += this.#queue[k++].bytes.byteLength;
        }
        const items = this.#queue.splice(0, k);
        const chunk = items.length === 1 ? items[0].bytes : concat(items, n);
        try {
          await this.#sink.write(chunk);
          this.#bytes += n;
        } catch (err) {
          this.#error = err as Error;
          this.#lose(items);
        } finally {
          this.#queued -= n;
        }
      }
      if (this.#error) {
        this.#lose(this.#queue);
        this.#queue = [];
        this.#queued = 0;
      }
    } finally {
      this.#pump = null;
    }
  }
}

function concat(items: { bytes: Bytes }[], n: number): Bytes {
  const out = new Uint8Array(n);
  let o = 0;
  for (const { bytes } of items) {
    out.set(bytes, o);
    o += bytes.byteLength;
  }
  return out;
}
