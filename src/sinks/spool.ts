/**
 * A bounded on-disk spool: where alerts wait while their destination (the
 * JetStream alert stream) is unreachable, and across a restart of the
 * sidecar.
 *
 * Layout of the spool directory:
 *
 * - `seg-<16 digits>.log`: append-only segment of spooled records. A new
 *   segment starts when the active one reaches `segmentBytes`, and at every
 *   open (so nothing is ever appended after a torn tail).
 * - `seg-<16 digits>.ack`: append-only acknowledgements of that segment's
 *   records (their ids). A segment and its ack file are deleted once every
 *   record in it is acknowledged.
 *
 * Every record, in both kinds of file, is framed as
 *
 * ```text
 * magic "LWS1" (4 bytes) | length u32 LE | CRC-32 (IEEE) of payload u32 LE | payload
 * ```
 *
 * A `.log` payload is `id length u16 LE | id (UTF-8) | first attempt ms f64 LE | data`;
 * an `.ack` payload is the id (UTF-8). On open, a record whose frame is cut
 * short at the end of a file (a write torn by a crash) is skipped and counted
 * as `torn`; a record whose CRC or length is wrong in the middle of a file is
 * skipped up to the next magic that starts a valid record and counted as
 * `corrupt`. Neither stops the spool from loading the rest.
 *
 * Bounds: `maxRecords` records waiting and `maxBytes` bytes of files on
 * disk. {@linkcode Spool.append} refuses a record that does not fit
 * (`spool_full`); the caller decides what to do with it (the JetStream sink
 * drops the newest alert, counts and logs it). Acknowledged records still
 * take disk space until their whole segment is acknowledged, which is why
 * segments are small compared with `maxBytes`.
 *
 * - `.lock`: held with an exclusive advisory lock while the spool is open,
 *   so one process at a time uses the directory; a second
 *   {@linkcode Spool.open} fails with a {@linkcode SpoolError} until the
 *   first closes (or its process exits).
 *
 * @module
 */
import { openSpoolDir, readIfExists, segName, writeAll } from "./spool_dir.ts";
import { frameRecord, scan, SpoolError } from "./spool_format.ts";
import { SpoolIndex } from "./spool_index.ts";
import {
  type ResolvedSpoolOptions,
  resolveSpoolOptions,
  type SpoolFsync,
  type SpoolOptions,
} from "./spool_options.ts";
import { SpoolWriter } from "./spool_writer.ts";

export { crc32, frameRecord, scanRecords, SpoolError } from "./spool_format.ts";
export type { SpoolFsync, SpoolOptions } from "./spool_options.ts";

const enc = new TextEncoder();

/** A record waiting in the spool. */
export interface SpoolRecord {
  id: string;
  data: Uint8Array;
  /** Time of the first delivery attempt (ms since the epoch), 0 when none was made. */
  firstAttemptMs: number;
}

/** Why {@linkcode Spool.append} refused a record. */
export type SpoolRefusal = "spool_full" | "spool_io_error";

/** Result of {@linkcode Spool.append}. */
export type SpoolAppendResult =
  | {
    ok: true;
    /** The id was already waiting: nothing written. */
    already: boolean;
    /**
     * Set when the record was written but the `fdatasync` after it failed:
     * it is waiting (delivered like any other, it survives a process
     * crash) but may not survive a host crash. The error says why.
     */
    unsynced?: string;
  }
  | { ok: false; reason: SpoolRefusal; error: string };

/** Counters of a spool. */
export interface SpoolStats {
  /** Records waiting. */
  pending: number;
  /** Bytes of spool files on disk. */
  bytes: number;
  /** Records found cut short at the end of a file on open (torn writes). */
  torn: number;
  /** Records found damaged inside a file on open (bad CRC or length). */
  corrupt: number;
  /** Records loaded as waiting on open. */
  loaded: number;
}

/**
 * A bounded, crash-tolerant, on-disk FIFO of records keyed by id.
 * Synchronous file I/O: an append is one `write` to the page cache, so a
 * caller that must never block (a sink's `submit`) can use it directly.
 *
 * @example
 * ```ts
 * const spool = Spool.open("/var/lib/latentwatch/spool", { maxBytes: 64 << 20 });
 * spool.append({ id: "a1", data: new TextEncoder().encode("{}"), firstAttemptMs: 0 });
 * for (const rec of spool.oldest(10)) {
 *   // ... deliver rec.data ...
 *   spool.ack(rec.id);
 * }
 * spool.close();
 * ```
 */
export class Spool {
  readonly dir: string;
  readonly #fsync: SpoolFsync;
  readonly #syncData: (file: Deno.FsFile) => void;
  /** Open ack files, per segment (closed when the segment goes, and at close). */
  #ackFiles = new Map<number, Deno.FsFile>();
  /** Waiting records, oldest first, and the bytes of the files. */
  readonly #index = new SpoolIndex();
  readonly #writer: SpoolWriter;
  #closed = false;
  /** `<dir>/.lock`, exclusively locked while the spool is open. */
  #lock: Deno.FsFile | null = null;
  readonly #loadStats: { torn: number; corrupt: number; loaded: number };

  private constructor(
    dir: string,
    opts: ResolvedSpoolOptions,
    nextSeg: number,
    loadStats: { torn: number; corrupt: number; loaded: number },
  ) {
    this.dir = dir;
    this.#fsync = opts.fsync;
    this.#syncData = opts.syncData;
    this.#writer = new SpoolWriter({ dir, opts, index: this.#index, nextSeg });
    this.#loadStats = loadStats;
  }

  /** When this spool calls `fdatasync` (see {@linkcode SpoolOptions.fsync}). */
  get fsync(): SpoolFsync {
    return this.#fsync;
  }

  /**
   * Open (creating if needed) the spool in `dir` and load the records still
   * waiting there, skipping and counting torn and corrupt ones.
   *
   * @example
   * ```ts
   * const spool = Spool.open("/tmp/spool");
   * spool.stats.pending; // records left by the previous run
   * ```
   */
  static open(dir: string, opts: SpoolOptions = {}): Spool {
    const resolved = resolveSpoolOptions(dir, opts);
    const { lock, segments: order } = openSpoolDir(dir);
    const loadStats = { torn: 0, corrupt: 0, loaded: 0 };
    const spool = new Spool(dir, resolved, (order.at(-1) ?? 0) + 1, loadStats);
    spool.#lock = lock;
    try {
      for (const seg of order) spool.#load(seg, loadStats);
    } catch (err) {
      spool.close();
      throw err;
    }
    loadStats.loaded = spool.#index.size;
    return spool;
  }

  #path(seg: number, kind: "log" | "ack"): string {
    return `${this.dir}/${segName(seg, kind)}`;
  }

  #load(seg: number, counts: { torn: number; corrupt: number }): void {
    const log = readIfExists(this.#path(seg, "log"));
    const ack = readIfExists(this.#path(seg, "ack"));
    const puts = scan(log);
    const acks = scan(ack);
    counts.torn += puts.torn + acks.torn;
    counts.corrupt += puts.corrupt + acks.corrupt;
    // earlier segments may have lost their last live record to a newer copy
    const emptied = this.#index.load(seg, puts, acks, log.length + ack.length);
    for (const s of emptied) this.#deleteSegment(s);
  }

  /** Counters, read live. */
  get stats(): SpoolStats {
    return { pending: this.#index.size, bytes: this.#index.bytes, ...this.#loadStats };
  }

  /** Records waiting. */
  get pending(): number {
    return this.#index.size;
  }

  /** Is `id` waiting? */
  has(id: string): boolean {
    return this.#index.has(id);
  }

  /**
   * Write `rec` at the end of the spool. Refused (nothing written) when the
   * spool is full or the write fails; the caller counts and logs that.
   */
  append(rec: SpoolRecord): SpoolAppendResult {
    return this.appendMany([rec])[0];
  }

  /**
   * Write `recs` at the end of the spool with one `write` per segment they
   * land in (and, with `fsync: batch` or `always`, one `fdatasync` before
   * returning). One result per record, in order: a record that does not fit
   * is refused (`spool_full`) and the others are still written; a failed
   * write refuses the records it carried (`spool_io_error`).
   *
   * @example
   * ```ts
   * const spool = Spool.open("/tmp/spool-many", { fsync: "batch" });
   * const enc = new TextEncoder();
   * const results = spool.appendMany([
   *   { id: "a1", data: enc.encode("{}"), firstAttemptMs: 0 },
   *   { id: "a2", data: enc.encode("{}"), firstAttemptMs: 0 },
   * ]);
   * results.every((r) => r.ok); // true: both on disk, synced together
   * spool.close();
   * ```
   */
  appendMany(recs: readonly SpoolRecord[]): SpoolAppendResult[] {
    this.#checkOpen();
    return this.#writer.appendMany(recs);
  }

  /** Remember (in memory only) when delivery of `id` was first tried. */
  markAttempt(id: string, ms: number): void {
    const e = this.#index.get(id);
    if (e && e.firstAttemptMs === 0) e.firstAttemptMs = ms;
  }

  /**
   * Up to `limit` waiting records, oldest first, skipping the ids in `skip`
   * (those already being delivered). Their data is read from disk now.
   */
  oldest(limit: number, skip?: ReadonlySet<string>): SpoolRecord[] {
    this.#checkOpen();
    const out: SpoolRecord[] = [];
    const files = new Map<number, Deno.FsFile>();
    try {
      for (const [id, e] of this.#index.entries()) {
        if (out.length >= limit) break;
        if (skip?.has(id)) continue;
        let f = files.get(e.seg);
        if (!f) {
          f = Deno.openSync(this.#path(e.seg, "log"), { read: true });
          files.set(e.seg, f);
        }
        const data = new Uint8Array(e.dataLength);
        f.seekSync(e.dataOffset, Deno.SeekMode.Start);
        for (let got = 0; got < data.length;) {
          const n = f.readSync(data.subarray(got));
          if (n === null) {
            throw new SpoolError(
              this.#path(e.seg, "log"),
              `${e.dataLength} bytes at offset ${e.dataOffset}`,
              `end of file after ${got}`,
            );
          }
          got += n;
        }
        out.push({ id, data, firstAttemptMs: e.firstAttemptMs });
      }
    } finally {
      for (const f of files.values()) f.close();
    }
    return out;
  }

  /**
   * Mark `id` delivered (or given up on): it is never returned again, not
   * even after a restart. Deletes its segment once nothing in it waits.
   * Returns false when `id` was not waiting.
   */
  ack(id: string): boolean {
    if (this.#closed) return false;
    const e = this.#index.remove(id);
    if (!e) return false;
    if (e.emptied) {
      // nothing left to acknowledge separately: the whole segment goes
      this.#writer.closeSegment(e.seg);
      this.#deleteSegment(e.seg);
      return true;
    }
    const framed = frameRecord(enc.encode(id));
    try {
      let f = this.#ackFiles.get(e.seg);
      if (!f) {
        f = Deno.openSync(this.#path(e.seg, "ack"), { write: true, create: true, append: true });
        this.#ackFiles.set(e.seg, f);
      }
      writeAll(f, framed);
      if (this.#fsync === "always") this.#syncData(f);
      this.#index.grow(e.seg, framed.length);
    } catch {
      // the ack is lost: the record is sent again after a restart and the
      // stream's dedup (Nats-Msg-Id) keeps it once
      this.#closeAck(e.seg);
    }
    return true;
  }

  #closeAck(seg: number): void {
    try {
      this.#ackFiles.get(seg)?.close();
    } catch { /* already closed */ }
    this.#ackFiles.delete(seg);
  }

  #deleteSegment(seg: number): void {
    this.#closeAck(seg);
    this.#index.dropSegment(seg);
    for (const kind of ["log", "ack"] as const) {
      try {
        Deno.removeSync(this.#path(seg, kind));
      } catch { /* never written, or gone */ }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new SpoolError(this.dir, "an open spool", "it closed");
  }

  /** Close the active segment. Waiting records stay on disk for the next open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const seg of [...this.#ackFiles.keys()]) this.#closeAck(seg);
    try {
      this.#writer.close();
    } finally {
      this.#lock?.close(); // closing the file releases its lock
      this.#lock = null;
    }
  }
}
