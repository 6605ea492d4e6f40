/**
 * The spool's bookkeeping in memory (`./spool.ts`): which records wait and
 * where each one's data lies (segment, offset, length), oldest first; per
 * segment, how many of its records still wait and how many bytes its `.log`
 * and `.ack` files hold; and the bytes of all segment files together, which
 * the spool's `maxBytes` bound is checked against. Built on open from the
 * scanned segment files ({@linkcode SpoolIndex.load}), kept up to date by
 * appends and acks. It reads and writes no file.
 *
 * @module
 */
import { decodePut, HEADER, type Scan } from "./spool_format.ts";

const dec = new TextDecoder();

/** Where a waiting record lies. */
export interface SpoolEntry {
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
 * The records waiting in a spool, oldest first, and the bytes its segment
 * files take.
 *
 * @example
 * ```ts
 * const index = new SpoolIndex();
 * index.addSegment(1);
 * index.add("a1", { seg: 1, dataOffset: 23, dataLength: 2, firstAttemptMs: 0 });
 * index.grow(1, 25);
 * index.remove("a1"); // { seg: 1, emptied: true }: segment 1's files can go
 * index.dropSegment(1);
 * index.bytes; // 0
 * ```
 */
export class SpoolIndex {
  /** Waiting records, oldest first (Map keeps insertion order). */
  readonly #entries = new Map<string, SpoolEntry>();
  readonly #segments = new Map<number, Segment>();
  #bytes = 0;

  /** Records waiting. */
  get size(): number {
    return this.#entries.size;
  }

  /** Bytes of the segment files on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Is `id` waiting? */
  has(id: string): boolean {
    return this.#entries.has(id);
  }

  /** Where `id` lies (the entry itself: its `firstAttemptMs` may be set), if it waits. */
  get(id: string): SpoolEntry | undefined {
    return this.#entries.get(id);
  }

  /** The waiting records, oldest first. */
  entries(): IterableIterator<[string, SpoolEntry]> {
    return this.#entries.entries();
  }

  /**
   * Take in segment `seg` from the records scanned in its `.log` (`puts`)
   * and `.ack` (`acks`) files, which hold `fileBytes` bytes together: the
   * records not acknowledged wait, and one whose id waits already in an
   * earlier segment replaces that copy. Returns the segments where nothing
   * waits (this one, or earlier ones that lost their last record to a newer
   * copy): their files can go.
   */
  load(seg: number, puts: Scan, acks: Scan, fileBytes: number): number[] {
    const acked = new Set(acks.records.map((r) => dec.decode(r.payload)));
    let live = 0;
    for (const r of puts.records) {
      const p = decodePut(r.payload);
      if (acked.has(p.id)) continue;
      const previous = this.#entries.get(p.id);
      if (previous) {
        // the same id spooled twice (an earlier copy never acknowledged): keep the newer
        this.#entries.delete(p.id);
        // the earlier copy may lie in this segment, which is not registered yet
        if (previous.seg === seg) live--;
        else this.#segments.get(previous.seg)!.live--;
      }
      this.#entries.set(p.id, {
        seg,
        dataOffset: r.offset + HEADER + p.dataAt,
        dataLength: r.payload.length - p.dataAt,
        firstAttemptMs: p.firstAttemptMs,
      });
      live++;
    }
    this.#segments.set(seg, { live, bytes: fileBytes });
    this.#bytes += fileBytes;
    return [...this.#segments].filter(([, info]) => info.live === 0).map(([s]) => s);
  }

  /** A new, empty segment `seg`. */
  addSegment(seg: number): void {
    this.#segments.set(seg, { live: 0, bytes: 0 });
  }

  /** Record `id` written to segment `entry.seg` (its bytes are counted by {@linkcode grow}). */
  add(id: string, entry: SpoolEntry): void {
    this.#entries.set(id, entry);
    this.#segments.get(entry.seg)!.live++;
  }

  /** `bytes` more written to the files of segment `seg`. */
  grow(seg: number, bytes: number): void {
    this.#segments.get(seg)!.bytes += bytes;
    this.#bytes += bytes;
  }

  /**
   * `id` no longer waits. Returns its segment, and whether nothing in it
   * waits now; undefined when `id` was not waiting.
   */
  remove(id: string): { seg: number; emptied: boolean } | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    this.#entries.delete(id);
    const segment = this.#segments.get(e.seg)!;
    segment.live--;
    return { seg: e.seg, emptied: segment.live === 0 };
  }

  /** Segment `seg`'s files are deleted: its bytes no longer count. */
  dropSegment(seg: number): void {
    const s = this.#segments.get(seg);
    this.#segments.delete(seg);
    if (s) this.#bytes -= s.bytes;
  }
}
