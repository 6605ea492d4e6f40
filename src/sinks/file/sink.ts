/**
 * The JSONL file sink: one JSON line per alert appended to a file, bounded
 * in size by rotation (`path` → `path.1` → … → `path.<keep>`, the oldest
 * removed).
 *
 * Durability (the fsync policy): with `fsync: "always"` (the default) a
 * batch of lines is `fdatasync`ed before it counts as delivered, so a
 * delivered alert survives a crash of the machine; with `"never"` the kernel
 * writes it back when it likes (it survives a crash of the sidecar, not of
 * the machine). Batches are up to 256 lines, so `always` costs one sync per
 * burst, not per alert.
 *
 * A write error closes the file; the retry reopens it and, when the file
 * does not end in a newline (a line torn by the error, or by a crash), ends
 * that line first so the torn line stays one bad line and the next is whole.
 * A write that outlasts `timeoutMs` is waited for by the retry, never issued
 * twice.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import {
  concat,
  OnceWriter,
  type Prepared,
  QueuedSink,
  raceSignal,
  type SinkDeps,
  writeAll,
} from "../base.ts";
import { type JsonFormat, renderLine } from "../formats.ts";

/** Settings of a {@linkcode FileSink}. */
export interface FileSinkOptions {
  /** Default `file:<path>`. */
  name?: string;
  /** The file (absolute), created when missing, appended to otherwise. */
  path: string;
  /** Default `json`. */
  format?: JsonFormat;
  /** Default `always`: see the module doc. */
  fsync?: "always" | "never";
  /** Rotate before a write would take the file past this size (default 100 MiB; 0: never). */
  maxBytes?: number;
  /** Rotated files kept (default 3; 0: the file is truncated instead of rotated). */
  keep?: number;
  maxQueue: number;
  timeoutMs: number;
  /** Default 5. */
  maxAttempts?: number;
}

const MAX_BATCH = 256;
const NEWLINE = 0x0a;

/**
 * Appends alerts to a JSONL file.
 *
 * @example
 * ```ts
 * import type { Alert } from "../../core/alert.ts";
 * declare const alert: Alert;
 * import { Logger } from "../../shared/log.ts";
 * const log = new Logger();
 * const sink = new FileSink({ path: "/var/log/lw/alerts.jsonl", maxQueue: 10000, timeoutMs: 5000 }, { log });
 * await sink.start();
 * sink.submit(alert);
 * ```
 */
export class FileSink extends QueuedSink {
  readonly #o: Required<Omit<FileSinkOptions, "name">>;
  readonly #once = new OnceWriter<Prepared[]>();
  readonly #enc = new TextEncoder();
  #file: Deno.FsFile | null = null;
  #size = 0;

  constructor(opts: FileSinkOptions, deps: SinkDeps) {
    super({
      name: opts.name ?? `file:${opts.path}`,
      maxQueue: opts.maxQueue,
      timeoutMs: opts.timeoutMs,
      maxAttempts: opts.maxAttempts ?? 5,
      maxBatch: MAX_BATCH,
    }, deps);
    this.#o = {
      format: "json",
      fsync: "always",
      maxBytes: 100 * 1024 * 1024,
      keep: 3,
      maxAttempts: 5,
      ...opts,
    };
  }

  /** Open (or create) the file now, so a bad path fails at start rather than at the first alert. */
  override async start(): Promise<void> {
    await this.#open();
  }

  protected prepare(alert: Alert): Prepared {
    const payload = this.#enc.encode(renderLine(alert, this.#o.format) + "\n");
    return { alert, payload, bytes: payload.length };
  }

  protected deliver(batch: Prepared[], signal: AbortSignal): Promise<void> {
    return raceSignal(this.#once.write(batch, () => this.#append(concat(batch))), signal);
  }

  override async close(): Promise<void> {
    await super.close();
    // let a write under way finish before the file is closed under it
    await this.#once.settled();
    this.#file?.close();
    this.#file = null;
  }

  async #append(bytes: Uint8Array): Promise<void> {
    try {
      let file = this.#file ?? await this.#open();
      if (this.#o.maxBytes > 0 && this.#size > 0 && this.#size + bytes.length > this.#o.maxBytes) {
        file = await this.#rotate();
      }
      await writeAll(file, bytes);
      this.#size += bytes.length;
      if (this.#o.fsync === "always") await file.syncData();
    } catch (err) {
      this.#file?.close();
      this.#file = null;
      throw err;
    }
  }

  async #open(): Promise<Deno.FsFile> {
    const file = await Deno.open(this.#o.path, {
      read: true,
      append: true,
      create: true,
      mode: 0o640,
    });
    try {
      this.#size = (await file.stat()).size;
      if (this.#size > 0) {
        // end a torn last line (see the module doc)
        await file.seek(-1, Deno.SeekMode.End);
        const last = new Uint8Array(1);
        await file.read(last);
        if (last[0] !== NEWLINE) {
          await writeAll(file, new Uint8Array([NEWLINE]));
          this.#size++;
        }
      }
    } catch (err) {
      file.close();
      throw err;
    }
    this.#file = file;
    return file;
  }

  async #rotate(): Promise<Deno.FsFile> {
    this.#file?.close();
    this.#file = null;
    const p = this.#o.path;
    if (this.#o.keep === 0) {
      await Deno.truncate(p);
    } else {
      for (let i = this.#o.keep - 1; i >= 1; i--) {
        await Deno.rename(`${p}.${i}`, `${p}.${i + 1}`).catch((err) => {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        });
      }
      await Deno.rename(p, `${p}.1`);
    }
    this.log.info("alert.file_rotated", { sink: this.name, path: p, keep: this.#o.keep });
    return await this.#open();
  }
}
