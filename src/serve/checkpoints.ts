/**
 * Per-request sequence checkpoints: the `Lw-Seq` each request's next frame
 * should carry, as of the last batch whose alerts were made durable. Kept
 * in an append-only file beside the alert spool so that a sidecar starting
 * after a crash (or a SIGKILL) knows where each request it was following
 * stopped: a frame arriving with a later seq shows how many frames were
 * never processed (in the killed run's queue, or sent while no sidecar
 * listened), and the pipeline counts them as lost.
 *
 * File (`requests.ckpt`): records framed like the spool's
 * (`"LWS1" | length | CRC-32 | payload`), each payload a JSON object
 * `{"s": {request: nextSeq, ...}, "e": [ended request, ...]}`. Later
 * records win. A torn or corrupt record (a crash mid-write) is skipped. The
 * file is rewritten compactly on open and whenever it grows past both
 * `compactBytes` and twice its size after the last rewrite (so a live state
 * larger than `compactBytes` is rewritten O(log) times, not at every
 * record): written to a temporary file, then renamed over.
 *
 * A request id longer than {@linkcode MAX_STORED_ID} characters is stored as
 * `#` and a 128-bit SHA-256 prefix (base64url) of it, so what one request
 * costs in the file is bounded whatever ids the tap sends.
 *
 * The pipeline writes a batch's checkpoint right after the batch's spool
 * write, so a checkpoint is never ahead of the alerts. A SIGKILL between the
 * two writes leaves it one batch behind: that batch's frames (at most
 * `max_batch_tokens` tokens' worth) are counted as lost although their
 * alerts are in the stream. Writes are not synced: after a host crash a
 * checkpoint may be further behind, with the same effect (dedup keeps the
 * alerts once). See docs/alert-delivery.md, "Known over-counts".
 *
 * @module
 */
import { createHash } from "node:crypto";
import { frameRecord, scanRecords } from "../sinks/spool.ts";

/** A checkpoint file cannot be opened or is not what it must be. */
export class CheckpointError extends Error {
  constructor(readonly path: string, message: string, options?: { cause?: unknown }) {
    super(`checkpoints ${path}: ${message}`, options);
    this.name = "CheckpointError";
  }
}

/** Settings of {@linkcode SeqCheckpoints.open}. */
export interface SeqCheckpointOptions {
  /** Requests remembered at most; the oldest are forgotten past it (default 100 000). */
  maxRequests?: number;
  /** Rewrite the file compactly past this size (default 4 MiB). */
  compactBytes?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Request ids longer than this are stored as a hash (see the module doc). */
export const MAX_STORED_ID = 64;

/** The key a request is stored under: itself, or `#` + a hash of a long id. */
function keyOf(requestId: string): string {
  if (requestId.length <= MAX_STORED_ID) return requestId;
  return "#" + createHash("sha256").update(requestId).digest("base64url").slice(0, 22);
}

/**
 * Where each request resumes after a restart.
 *
 * @example
 * ```ts
 * const cp = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
 * cp.record(new Map([["req-1", 5]]), []); // req-1's frames 0..4 are done
 * cp.close();
 * const again = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
 * again.take("req-1"); // 5
 * again.close();
 * ```
 */
export class SeqCheckpoints {
  readonly path: string;
  readonly #max: number;
  readonly #compactBytes: number;
  /** Request → next seq, least recently recorded first. */
  #next = new Map<string, number>();
  /** What the previous run left: taken (once) by the first frame of each request. */
  #resume = new Map<string, number>();
  #file: Deno.FsFile | null = null;
  #size = 0;
  /** The file's size right after the last compact rewrite. */
  #compactedSize = 0;
  #compactions = 0;
  /** Records skipped as torn or corrupt when the file was opened. */
  readonly damaged: number;

  private constructor(path: string, opts: SeqCheckpointOptions, damaged: number) {
    this.path = path;
    this.#max = opts.maxRequests ?? 100_000;
    this.#compactBytes = opts.compactBytes ?? 4 * 1024 * 1024;
    this.damaged = damaged;
  }

  /**
   * Open (creating if needed) the checkpoint file at `path`, load what a
   * previous run left, and rewrite it compactly.
   *
   * @example
   * ```ts
   * const cp = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
   * cp.pending; // requests the previous run was following
   * cp.close();
   * ```
   */
  static open(path: string, opts: SeqCheckpointOptions = {}): SeqCheckpoints {
    let bytes = new Uint8Array(0);
    try {
      bytes = Deno.readFileSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new CheckpointError(path, "expected a readable file", { cause: err });
      }
    }
    const found = scanRecords(bytes);
    const cp = new SeqCheckpoints(path, opts, found.torn + found.corrupt);
    for (const r of found.records) {
      try {
        cp.#apply(JSON.parse(dec.decode(r)));
      } catch { /* a record that is not JSON was damage the CRC missed: skip it */ }
    }
    cp.#resume = new Map(cp.#next);
    cp.#compact();
    return cp;
  }

  /** Compact rewrites done since open (the one at open included). */
  get compactions(): number {
    return this.#compactions;
  }

  /** Requests the previous run left a checkpoint for and no frame has taken yet. */
  get pending(): number {
    return this.#resume.size;
  }

  /**
   * The seq `requestId` resumes from, when the previous run left one;
   * each request's checkpoint is taken once.
   */
  take(requestId: string): number | undefined {
    const key = keyOf(requestId);
    const seq = this.#resume.get(key);
    this.#resume.delete(key);
    return seq;
  }

  /**
   * Record the next seq of some requests and forget ended ones: one write.
   * Throws a {@linkcode CheckpointError} when the write fails.
   */
  record(next: ReadonlyMap<string, number>, ended: readonly string[]): void {
    if (next.size === 0 && ended.length === 0) return;
    const s: Record<string, number> = {};
    for (const [id, seq] of next) s[keyOf(id)] = seq;
    const body = { s, e: ended.map(keyOf) };
    this.#apply(body);
    this.#write(frameRecord(enc.encode(JSON.stringify(body))));
    // amortised: a live state larger than compactBytes is not rewritten at every record
    if (this.#size > Math.max(this.#compactBytes, 2 * this.#compactedSize)) this.#compact();
  }

  /** Close the file (what it holds is kept for the next open). */
  close(): void {
    try {
      this.#file?.close();
    } catch { /* already closed */ }
    this.#file = null;
  }

  #apply(body: { s?: Record<string, number>; e?: readonly string[] }): void {
    // keyOf: a file an older version wrote may hold long ids as they were
    for (const [id, seq] of Object.entries(body.s ?? {})) {
      if (!Number.isSafeInteger(seq)) continue;
      const key = keyOf(id);
      this.#next.delete(key); // keep Map order = least recently recorded first
      this.#next.set(key, seq);
    }
    for (const id of body.e ?? []) this.#next.delete(keyOf(id));
    while (this.#next.size > this.#max) this.#next.delete(this.#next.keys().next().value!);
  }

  #write(framed: Uint8Array): void {
    try {
      this.#file ??= Deno.openSync(this.path, { write: true, create: true, append: true });
      for (let done = 0; done < framed.length;) {
        done += this.#file.writeSync(framed.subarray(done));
      }
      this.#size += framed.length;
    } catch (err) {
      this.close();
      throw new CheckpointError(this.path, "expected the write to succeed", { cause: err });
    }
  }

  /** Rewrite the file with the live checkpoints only: a temporary file renamed over it. */
  #compact(): void {
    this.close();
    const tmp = `${this.path}.tmp`;
    const framed = frameRecord(enc.encode(JSON.stringify({ s: Object.fromEntries(this.#next) })));
    try {
      Deno.writeFileSync(tmp, framed);
      Deno.renameSync(tmp, this.path);
      this.#size = this.#compactedSize = framed.length;
      this.#compactions++;
    } catch (err) {
      throw new CheckpointError(this.path, "expected to rewrite it compactly", { cause: err });
    }
  }
}
