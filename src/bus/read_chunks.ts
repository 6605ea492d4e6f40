/**
 * The chunks a socket reads into, reused when nothing can still view them.
 *
 * The NATS client parses each read synchronously and hands every message a
 * view of the chunk it arrived in. A fresh 256 KiB chunk per quarter MiB read
 * is external memory to V8: at half of `serve`'s saturation (about 130 MB/s
 * of frames) that churn started a full mark-compact every 0.25 s, each 11–18
 * ms of marking on the sidecar's thread (docs/performance-history.md). A chunk can be
 * read into again only when no message parsed from it is still viewed; the
 * client cannot say that, but its subscribers can: a handler that *borrows*
 * its message (reads or copies the bytes before it returns, keeps no view)
 * is counted. When every message parsed while a chunk was current went to
 * borrowing handlers, the chunk is kept and read into again from its start
 * (it is retired only once all of it was read and parsed); otherwise it is
 * left to the garbage collector, as before. A message split across two reads
 * is assembled in the parser's own copy, so it views neither chunk.
 *
 * @module
 */

/** Bytes in each read chunk: a message kept alive keeps at most this much with it. */
export const CHUNK_BYTES = 256 << 10;
/** A chunk with less free space than this is retired and another started. */
export const MIN_READ_BYTES = 64 << 10;

/**
 * Two running totals, read when a chunk is retired: the chunk is reused when
 * both grew by the same amount while it was current.
 */
export interface ChunkLoans {
  /** Messages the client has parsed on this connection, in all. */
  parsed(): number;
  /** Of those, messages handed only to handlers that keep no view of their bytes. */
  borrowed(): number;
}

/** What {@linkcode ReadChunks} did with its chunks since it was made. */
export interface ReadChunkStats {
  /** Chunks allocated fresh. */
  allocated: number;
  /** Retired chunks read into again instead (nothing could still view them). */
  reused: number;
  /** Retired chunks left to the garbage collector: a message from them may still be viewed. */
  kept: number;
}

/**
 * A connection's read chunks. {@linkcode space} is where the next read goes;
 * {@linkcode commit} keeps what arrived there and returns its view.
 *
 * @example
 * ```ts
 * import { ReadChunks } from "./read_chunks.ts";
 * const chunks = new ReadChunks();
 * const room = chunks.space(); // read into this
 * room.set([1, 2, 3]);
 * const view = chunks.commit(3); // Uint8Array [1, 2, 3], a view of the chunk
 * ```
 */
export class ReadChunks {
  #chunk: Uint8Array = new Uint8Array(0);
  #used = 0;
  #loans: ChunkLoans | null = null;
  /** The totals when the current chunk was started; null: not counted from its start. */
  #base: { parsed: number; borrowed: number } | null = null;
  readonly #stats: ReadChunkStats = { allocated: 0, reused: 0, kept: 0 };

  /**
   * Reuse retired chunks when `loans` shows that every message parsed from
   * them was borrowed. Counting starts with the next chunk.
   */
  lendWhen(loans: ChunkLoans): void {
    this.#loans = loans;
    this.#base = null;
  }

  /** Where the next read goes: at least {@linkcode MIN_READ_BYTES} of the current chunk. */
  space(): Uint8Array {
    if (this.#chunk.length - this.#used < MIN_READ_BYTES) this.#next();
    return this.#chunk.subarray(this.#used);
  }

  /** Keep the `n` bytes just read into {@linkcode space}; returns their view. */
  commit(n: number): Uint8Array {
    const start = this.#used;
    this.#used = start + n;
    return this.#chunk.subarray(start, start + n);
  }

  /** Chunks allocated, reused and left to the garbage collector so far. */
  stats(): ReadChunkStats {
    return { ...this.#stats };
  }

  /** Retire the current chunk: read into it again when nothing can view it, else start a fresh one. */
  #next(): void {
    if (this.#chunk.length > 0 && this.#allBorrowed()) this.#stats.reused++;
    else {
      if (this.#chunk.length > 0) this.#stats.kept++;
      this.#chunk = new Uint8Array(CHUNK_BYTES);
      this.#stats.allocated++;
    }
    this.#used = 0;
    const loans = this.#loans;
    this.#base = loans ? { parsed: loans.parsed(), borrowed: loans.borrowed() } : null;
  }

  /** Every message parsed since the current chunk started went to a borrowing handler. */
  #allBorrowed(): boolean {
    const loans = this.#loans, base = this.#base;
    return loans !== null && base !== null &&
      loans.parsed() - base.parsed === loans.borrowed() - base.borrowed;
  }
}
