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
import { decodePut, encodePut, frameRecord, HEADER, scan, SpoolError } from "./spool_format.ts";

export { crc32, frameRecord, scanRecords, SpoolError } from "./spool_format.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Settings of a {@linkcode Spool}. */
export interface SpoolOptions {
  /** Bytes of segment and ack files at most (default 256 MiB). */
  maxBytes?: number;
  /** Records waiting at most (default 100 000). */
  maxRecords?: number;
  /** A new segment starts past this size (default 4 MiB, at most `maxBytes / 4`). */
  segmentBytes?: number;
  /**
   * When to `fdatasync` (default `never`):
   *
   * - `never`: a record is in the page cache once {@linkcode Spool.append}
   *   returns: it survives a crash (or SIGKILL) of the sidecar, not a crash
   *   of the host.
   * - `batch`: one `fdatasync` per {@linkcode Spool.appendMany} call (an
   *   `append` is a call of one) before it returns: the records survive a
   *   host crash. Ack records are not synced: after a host crash an alert
   *   already delivered may be sent again (the stream's dedup keeps it once
   *   inside its duplicate window).
   * - `always`: as `batch`, and every ack record is synced too, so a host
   *   crash resends nothing already acknowledged.
   */
  fsync?: SpoolFsync;
  /**
   * How a file's data is synced (default `file.syncDataSync()`, i.e.
   * `fdatasync`); tests inject failures here.
   */
  syncData?: (file: Deno.FsFile) => void;
}

/** When a {@linkcode Spool} calls `fdatasync` (see {@linkcode SpoolOptions.fsync}). */
export type SpoolFsync = "never" | "batch" | "always";

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

/** Where a waiting record lies. */
interface Entry {
  seg: number;
  /** Offset of the record's data (past frame header, id and time) and its length. */
  dataOffset: number;
  dataLength: number;
  firstAttemptMs: number;
}

/** Per segment: records not yet acknowledged, and bytes of its two files. */
interface Segment {
  live: number;
  bytes: number;
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
  readonly #maxBytes: number;
  readonly #maxRecords: number;
  readonly #segmentBytes: number;
  readonly #fsync: SpoolFsync;
  readonly #syncData: (file: Deno.FsFile) => void;
  /** Open ack files, per segment (closed when the segment goes, and at close). */
  #ackFiles = new Map<number, Deno.FsFile>();
  /** Waiting records, oldest first (Map keeps insertion order). */
  #index = new Map<string, Entry>();
  #segments = new Map<number, Segment>();
  #active: { seg: number; file: Deno.FsFile; size: number } | null = null;
  #nextSeg: number;
  #bytes = 0;
  #closed = false;
  /** `<dir>/.lock`, exclusively locked while the spool is open. */
  #lock: Deno.FsFile | null = null;
  readonly #loadStats: { torn: number; corrupt: number; loaded: number };

  private constructor(
    dir: string,
    opts: Required<Omit<SpoolOptions, "syncData">> & Pick<SpoolOptions, "syncData">,
    nextSeg: number,
    loadStats: { torn: number; corrupt: number; loaded: number },
  ) {
    this.dir = dir;
    this.#maxBytes = opts.maxBytes;
    this.#maxRecords = opts.maxRecords;
    this.#segmentBytes = opts.segmentBytes;
    this.#fsync = opts.fsync;
    this.#syncData = opts.syncData ?? ((file) => file.syncDataSync());
    this.#nextSeg = nextSeg;
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
    const maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    const maxRecords = opts.maxRecords ?? 100_000;
    if (opts.fsync !== undefined && !["never", "batch", "always"].includes(opts.fsync)) {
      throw new SpoolError(dir, "fsync never, batch or always", String(opts.fsync));
    }
    if (!(maxBytes >= 1024)) throw new SpoolError(dir, "maxBytes ≥ 1024", String(maxBytes));
    if (!(maxRecords >= 1)) throw new SpoolError(dir, "maxRecords ≥ 1", String(maxRecords));
    const segmentBytes = Math.max(
      1024,
      Math.min(opts.segmentBytes ?? 4 * 1024 * 1024, Math.floor(maxBytes / 4)),
    );
    const { lock, segments: order } = openSpoolDir(dir);
    const loadStats = { torn: 0, corrupt: 0, loaded: 0 };
    const spool = new Spool(
      dir,
      {
        maxBytes,
        maxRecords,
        segmentBytes,
        fsync: opts.fsync ?? "never",
        ...(opts.syncData ? { syncData: opts.syncData } : {}),
      },
      (order.at(-1) ?? 0) + 1,
      loadStats,
    );
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
    const acked = new Set(acks.records.map((r) => dec.decode(r.payload)));
    let live = 0;
    for (const r of puts.records) {
      const p = decodePut(r.payload);
      if (acked.has(p.id)) continue;
      const previous = this.#index.get(p.id);
      if (previous) {
        // the same id spooled twice (an earlier copy never acknowledged): keep the newer
        this.#index.delete(p.id);
        this.#segments.get(previous.seg)!.live--;
      }
      this.#index.set(p.id, {
        seg,
        dataOffset: r.offset + HEADER + p.dataAt,
        dataLength: r.payload.length - p.dataAt,
        firstAttemptMs: p.firstAttemptMs,
      });
      live++;
    }
    this.#segments.set(seg, { live, bytes: log.length + ack.length });
    this.#bytes += log.length + ack.length;
    // earlier segments may have lost their last live record to a newer copy
    for (const [s, info] of this.#segments) if (info.live === 0) this.#deleteSegment(s);
  }

  /** Counters, read live. */
  get stats(): SpoolStats {
    return { pending: this.#index.size, bytes: this.#bytes, ...this.#loadStats };
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
    const out: SpoolAppendResult[] = new Array(recs.length);
    /** Records framed for the active segment, not yet written. */
    let chunk: { i: number; framed: Uint8Array; idLen: number }[] = [];
    let chunkBytes = 0;
    let pendingCount = this.#index.size;
    let pendingBytes = this.#bytes;
    const inBatch = new Set<string>();
    let wrote = false;
    let syncError: string | null = null;
    const syncActive = (): void => {
      if (!wrote || this.#fsync === "never" || !this.#active) return;
      try {
        this.#syncData(this.#active.file);
      } catch (err) {
        syncError ??= (err as Error).message;
      }
      wrote = false;
    };
    const flush = (): void => {
      if (chunk.length === 0) return;
      const items = chunk;
      chunk = [];
      const bytes = chunkBytes;
      chunkBytes = 0;
      try {
        if (!this.#active) this.#openSegment();
        const a = this.#active!;
        const buf = new Uint8Array(bytes);
        let at = 0;
        for (const it of items) {
          buf.set(it.framed, at);
          at += it.framed.length;
        }
        writeAll(a.file, buf);
        wrote = true;
        const segment = this.#segments.get(a.seg)!;
        for (const it of items) {
          const rec = recs[it.i];
          this.#index.set(rec.id, {
            seg: a.seg,
            dataOffset: a.size + HEADER + 2 + it.idLen + 8,
            dataLength: rec.data.length,
            firstAttemptMs: rec.firstAttemptMs,
          });
          a.size += it.framed.length;
          segment.live++;
          out[it.i] = { ok: true, already: false };
        }
        segment.bytes += bytes;
        this.#bytes += bytes;
      } catch (err) {
        // a half-written chunk is skipped as torn on the next open; start a new segment now
        try {
          this.#active?.file.close();
        } catch { /* already unusable */ }
        this.#active = null;
        for (const it of items) {
          out[it.i] = { ok: false, reason: "spool_io_error", error: (err as Error).message };
          pendingCount--;
          pendingBytes -= it.framed.length;
          inBatch.delete(recs[it.i].id);
        }
      }
    };
    for (let i = 0; i < recs.length; i++) {
      const rec = recs[i];
      if (this.#index.has(rec.id) || inBatch.has(rec.id)) {
        out[i] = { ok: true, already: true };
        continue;
      }
      const idLen = enc.encode(rec.id).length;
      const framed = frameRecord(encodePut(rec));
      if (pendingCount >= this.#maxRecords) {
        out[i] = {
          ok: false,
          reason: "spool_full",
          error: `expected fewer than ${this.#maxRecords} records waiting, found ${pendingCount}`,
        };
        continue;
      }
      if (pendingBytes + framed.length > this.#maxBytes) {
        out[i] = {
          ok: false,
          reason: "spool_full",
          error: `expected at most ${this.#maxBytes} bytes on disk, found ${pendingBytes} + ` +
            `${framed.length} for this record`,
        };
        continue;
      }
      const activeSize = (this.#active?.size ?? 0) + chunkBytes;
      if (activeSize > 0 && activeSize + framed.length > this.#segmentBytes) {
        // this record starts a new segment
        flush();
        syncActive();
        try {
          this.#active?.file.close();
        } catch { /* closing a segment whose write failed */ }
        this.#active = null;
      }
      chunk.push({ i, framed, idLen });
      chunkBytes += framed.length;
      pendingCount++;
      pendingBytes += framed.length;
      inBatch.add(rec.id);
    }
    flush();
    syncActive();
    if (syncError !== null) {
      // written but not known to be on disk: the records stay waiting (they
      // are delivered like any other, and survive a process crash), so they
      // are accepted, not refused: refusing them while the replay still
      // delivers them would publish them twice and count drops that a sink
      // sees. What a host crash would cost is said with `unsynced`.
      for (let i = 0; i < out.length; i++) {
        const r = out[i];
        if (r?.ok && !r.already) out[i] = { ok: true, already: false, unsynced: syncError };
      }
    }
    return out;
  }

  #openSegment(): void {
    const seg = this.#nextSeg++;
    const file = Deno.openSync(this.#path(seg, "log"), {
      write: true,
      create: true,
      append: true,
    });
    this.#active = { seg, file, size: 0 };
    this.#segments.set(seg, { live: 0, bytes: 0 });
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
      for (const [id, e] of this.#index) {
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
    const e = this.#index.get(id);
    if (!e) return false;
    this.#index.delete(id);
    const segment = this.#segments.get(e.seg)!;
    segment.live--;
    if (segment.live === 0) {
      // nothing left to acknowledge separately: the whole segment goes
      if (this.#active?.seg === e.seg) {
        this.#active.file.close();
        this.#active = null;
      }
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
      segment.bytes += framed.length;
      this.#bytes += framed.length;
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
    const s = this.#segments.get(seg);
    this.#segments.delete(seg);
    if (s) this.#bytes -= s.bytes;
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
      this.#active?.file.close();
    } finally {
      this.#active = null;
      this.#lock?.close(); // closing the file releases its lock
      this.#lock = null;
    }
  }
}
