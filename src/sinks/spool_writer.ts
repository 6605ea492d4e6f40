/**
 * The write path of the spool (`./spool.ts`): the active segment's `.log`
 * file, and appending a batch of records at its end: each record checked
 * against the bounds (`maxRecords`, `maxBytes`), framed, and written with
 * one `write` per segment the batch lands in; a new segment started past
 * `segmentBytes`; with `fsync: batch` or `always`, one `fdatasync` per
 * segment written before the call returns. Every record written is added to
 * the spool's {@linkcode SpoolIndex}.
 *
 * @module
 */
import type { SpoolAppendResult, SpoolRecord } from "./spool.ts";
import { segName, writeAll } from "./spool_dir.ts";
import { encodePut, frameRecord, HEADER } from "./spool_format.ts";
import type { SpoolIndex } from "./spool_index.ts";
import type { ResolvedSpoolOptions } from "./spool_options.ts";

const enc = new TextEncoder();

/**
 * Writes records at the end of a spool's segments, one segment open for
 * writing at a time.
 *
 * @example
 * ```ts
 * import { SpoolIndex } from "./spool_index.ts";
 * import { resolveSpoolOptions } from "./spool_options.ts";
 * const dir = await Deno.makeTempDir();
 * const index = new SpoolIndex();
 * const writer = new SpoolWriter({ dir, opts: resolveSpoolOptions(dir), index, nextSeg: 1 });
 * writer.appendMany([{ id: "a1", data: new TextEncoder().encode("{}"), firstAttemptMs: 0 }]);
 * index.size; // 1
 * writer.close();
 * ```
 */
export class SpoolWriter {
  readonly #dir: string;
  readonly #o: ResolvedSpoolOptions;
  readonly #index: SpoolIndex;
  #active: { seg: number; file: Deno.FsFile; size: number } | null = null;
  #nextSeg: number;

  constructor(
    args: { dir: string; opts: ResolvedSpoolOptions; index: SpoolIndex; nextSeg: number },
  ) {
    this.#dir = args.dir;
    this.#o = args.opts;
    this.#index = args.index;
    this.#nextSeg = args.nextSeg;
  }

  /**
   * Write `recs` at the end of the spool (see `Spool.appendMany`): one
   * result per record, in order.
   */
  appendMany(recs: readonly SpoolRecord[]): SpoolAppendResult[] {
    const out: SpoolAppendResult[] = new Array(recs.length);
    /** Records framed for the active segment, not yet written. */
    let chunk: { i: number; framed: Uint8Array; idLen: number }[] = [];
    let chunkBytes = 0;
    let pendingCount = this.#index.size;
    let pendingBytes = this.#index.bytes;
    const inBatch = new Set<string>();
    let wrote = false;
    let syncError: string | null = null;
    const syncActive = (): void => {
      if (!wrote || this.#o.fsync === "never" || !this.#active) return;
      try {
        this.#o.syncData(this.#active.file);
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
        for (const it of items) {
          const rec = recs[it.i];
          this.#index.add(rec.id, {
            seg: a.seg,
            dataOffset: a.size + HEADER + 2 + it.idLen + 8,
            dataLength: rec.data.length,
            firstAttemptMs: rec.firstAttemptMs,
          });
          a.size += it.framed.length;
          out[it.i] = { ok: true, already: false };
        }
        this.#index.grow(a.seg, bytes);
      } catch (err) {
        // a half-written chunk is skipped as torn on the next open; start a new segment now
        this.#endSegment();
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
      const full = this.#refusal(pendingCount, pendingBytes, framed.length);
      if (full) {
        out[i] = full;
        continue;
      }
      const activeSize = (this.#active?.size ?? 0) + chunkBytes;
      if (activeSize > 0 && activeSize + framed.length > this.#o.segmentBytes) {
        // this record starts a new segment
        flush();
        syncActive();
        this.#endSegment();
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
    const file = Deno.openSync(`${this.#dir}/${segName(seg, "log")}`, {
      write: true,
      create: true,
      append: true,
    });
    this.#active = { seg, file, size: 0 };
    this.#index.addSegment(seg);
  }

  /**
   * Why a record of `framedLength` bytes does not fit with `pendingCount`
   * records and `pendingBytes` bytes already spooled; null when it fits.
   */
  #refusal(
    pendingCount: number,
    pendingBytes: number,
    framedLength: number,
  ): SpoolAppendResult | null {
    if (pendingCount >= this.#o.maxRecords) {
      return {
        ok: false,
        reason: "spool_full",
        error: `expected fewer than ${this.#o.maxRecords} records waiting, found ${pendingCount}`,
      };
    }
    if (pendingBytes + framedLength > this.#o.maxBytes) {
      return {
        ok: false,
        reason: "spool_full",
        error: `expected at most ${this.#o.maxBytes} bytes on disk, found ${pendingBytes} + ` +
          `${framedLength} for this record`,
      };
    }
    return null;
  }

  /**
   * Close the active segment, quietly (a segment whose write failed may be
   * unusable already): the next write starts a new one.
   */
  #endSegment(): void {
    try {
      this.#active?.file.close();
    } catch { /* already unusable */ }
    this.#active = null;
  }

  /** Close the active segment when it is `seg` (its files are about to go). */
  closeSegment(seg: number): void {
    if (this.#active?.seg === seg) {
      this.#active.file.close();
      this.#active = null;
    }
  }

  /** Close the active segment; the next write starts a new one. */
  close(): void {
    try {
      this.#active?.file.close();
    } finally {
      this.#active = null;
    }
  }
}
