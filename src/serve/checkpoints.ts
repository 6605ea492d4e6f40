/**
 * Per-request sequence checkpoints, kept in an append-only file beside the
 * alert spool so that a sidecar starting after a crash (or a SIGKILL) knows
 * where each request it was following stopped. Two watermarks per request:
 *
 * - **processed** (`next`): the `Lw-Seq` of the first frame not yet
 *   processed, as of the last batch whose alerts were made durable (batch
 *   order). A restart resumes the request here.
 * - **counted** (`counted`, `lost`): at intake, the frames a seq gap showed
 *   missing are counted lost at once, although frames before the gap may
 *   still wait in the queue. Every gap below `counted` was counted, `lost`
 *   frames of `[next, counted)` in all.
 *
 * A frame arriving after a restart with a later seq shows how many frames
 * were never processed (in the killed run's queue, or sent while no sidecar
 * listened); the pipeline counts those not already counted
 * ({@linkcode uncountedBefore}). Keeping the two apart matters: a single
 * watermark written at intake (past a gap) and again by batches (behind
 * it) goes backwards and forwards, so a kill either loses queued frames
 * uncounted or counts a gap twice.
 *
 * File (`requests.ckpt`): records framed like the spool's
 * (`"LWS1" | length | CRC-32 | payload`), each payload a JSON object
 * `{"s": {request: state, ...}, "e": [ended request, ...]}`, a state being
 * `next` alone (nothing counted beyond it) or `[next, counted, lost]`. Each
 * record holds a request's whole state: later records win. A torn or
 * corrupt record (a crash mid-write) is skipped. The file is rewritten
 * compactly on open and whenever it grows past both `compactBytes` and
 * twice its size after the last rewrite (so a live state larger than
 * `compactBytes` is rewritten O(log) times, not at every record): written to
 * a temporary file, then renamed over.
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
import { RecencyMap } from "../core/recency_map.ts";
import { frameRecord, RecordFramer, scanRecords } from "../sinks/spool_format.ts";
import type { Resume } from "../pipeline/sequence.ts";

/** A checkpoint file cannot be opened or is not what it must be. */
export class CheckpointError extends Error {
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(`checkpoints ${path}: ${message}`, options);
    this.name = "CheckpointError";
  }
}

export { type Resume, uncountedBefore } from "../pipeline/sequence.ts";

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

/**
 * One request's watermarks in memory: `p` processed, and the seq ranges
 * `[from, to)` at or above it already counted lost (sorted, disjoint).
 */
interface State {
  p: number;
  gaps: [number, number][];
}

/** A state as written: `p` alone, or `[p, counted, lost]`. */
type Stored = number | [number, number, number];

function storedOf(st: State): Stored {
  if (st.gaps.length === 0) return st.p;
  const lost = st.gaps.reduce((n, [a, b]) => n + b - a, 0);
  return [st.p, st.gaps[st.gaps.length - 1][1], lost];
}

/**
 * A record's JSON, `{"s":{key:stored,…},"e":[…]}` (`e` left out when
 * `ended` is), written out rather than through an object keyed by request:
 * request keys as property names would make V8 build new hidden classes for
 * every batch's set of requests, in the old generation. The same text as
 * `JSON.stringify` of that object, except that keys come in the order given
 * (integer-like ids are not moved first) and a `__proto__` id is kept (an
 * object's setter dropped it); `JSON.parse` reads both back as own keys.
 *
 * @example
 * ```ts
 * import { recordJson } from "./checkpoints.ts";
 * recordJson([["req-1", 5]], ["req-3"]); // '{"s":{"req-1":5},"e":["req-3"]}'
 * ```
 */
export function recordJson(states: Iterable<[string, Stored]>, ended?: readonly string[]): string {
  let json = '{"s":{';
  let first = true;
  for (const [key, stored] of states) {
    json += `${first ? "" : ","}${JSON.stringify(key)}:${JSON.stringify(stored)}`;
    first = false;
  }
  return ended === undefined ? `${json}}}` : `${json}},"e":${JSON.stringify(ended)}}`;
}

/**
 * The state a stored value stands for (null when malformed). Counted frames
 * are taken to lie just below `counted`: what {@linkcode uncountedBefore}
 * assumes too.
 */
function stateOf(v: unknown): State | null {
  if (Number.isSafeInteger(v) && (v as number) >= 0) return { p: v as number, gaps: [] };
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    return null;
  }
  const [p, counted, lost] = v as number[];
  if (counted < p || lost > counted - p) return null;
  return { p, gaps: lost > 0 ? [[counted - lost, counted]] : [] };
}

function resumeOf(st: State): Resume {
  const stored = storedOf(st);
  return typeof stored === "number"
    ? { next: stored, counted: stored, lost: 0 }
    : { next: stored[0], counted: stored[1], lost: stored[2] };
}

/** Add `[from, to)` to sorted disjoint ranges, merging what overlaps or touches. */
function addRange(gaps: [number, number][], from: number, to: number): [number, number][] {
  const out: [number, number][] = [];
  let placed = false;
  for (const [a, b] of gaps) {
    if (b < from) out.push([a, b]);
    else if (a > to) {
      if (!placed) out.push([from, to]), placed = true;
      out.push([a, b]);
    } else {
      from = Math.min(from, a);
      to = Math.max(to, b);
    }
  }
  if (!placed) out.push([from, to]);
  return out;
}

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
 * again.take("req-1"); // { next: 5, counted: 5, lost: 0 }
 * again.close();
 * ```
 */
export class SeqCheckpoints {
  readonly path: string;
  readonly #max: number;
  readonly #compactBytes: number;
  /** Request key → watermarks, least recently recorded first. */
  #next = new RecencyMap<string, State>();
  /** What the previous run left: taken (once) by the first frame of each request. */
  #resume = new Map<string, Resume>();
  #file: Deno.FsFile | null = null;
  /** Frames each record in one reused buffer (written before the next is framed). */
  readonly #framer = new RecordFramer();
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
    cp.#resume = new Map([...cp.#next].map(([key, st]) => [key, resumeOf(st)]));
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
   * Where `requestId` resumes, when the previous run left a checkpoint for it;
   * each request's checkpoint is taken once. Count the frames lost before its
   * first frame now with {@linkcode uncountedBefore}.
   *
   * @example
   * ```ts
   * const cp = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
   * const resume = cp.take("req-1"); // e.g. { next: 5, counted: 8, lost: 3 }
   * const lost = resume ? uncountedBefore(resume, 10) : 0; // the first frame now has seq 10
   * if (resume && 10 > resume.next) cp.lost("req-1", resume.next, 10); // counted: not again
   * cp.close();
   * ```
   */
  take(requestId: string): Resume | undefined {
    const key = keyOf(requestId);
    const resume = this.#resume.get(key);
    this.#resume.delete(key);
    return resume;
  }

  /**
   * Record that batches processed some requests up to (not including) the
   * given seqs, and forget ended ones: one write. The processed watermark
   * never goes backwards: a lower seq than the one recorded leaves it.
   * Throws a {@linkcode CheckpointError} when the write fails.
   *
   * @example
   * ```ts
   * const cp = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
   * cp.record(new Map([["req-1", 5], ["req-2", 1]]), ["req-3"]); // req-3 ended
   * cp.close();
   * ```
   */
  record(next: ReadonlyMap<string, number>, ended: readonly string[]): void {
    if (next.size === 0 && ended.length === 0) return;
    const s: [string, Stored][] = [];
    for (const [id, seq] of next) {
      if (!Number.isSafeInteger(seq) || seq < 0) continue;
      const key = keyOf(id);
      const st = this.#state(key);
      if (seq > st.p) {
        st.p = seq;
        // what a batch processed is no longer a gap ahead of it
        st.gaps = st.gaps.filter(([, b]) => b > seq).map(([a, b]) => [Math.max(a, seq), b]);
      }
      s.push([key, storedOf(st)]);
    }
    this.#append(s, ended.map(keyOf));
  }

  /**
   * Record that frames `[from, to)` of `requestId` were counted lost at
   * intake (a seq gap), before any frame after them is processed: one
   * write. A restart then resumes the request from its processed watermark
   * without counting these frames again. Throws a {@linkcode CheckpointError}
   * when the write fails.
   *
   * @example
   * ```ts
   * const cp = SeqCheckpoints.open("/tmp/lw-spool/requests.ckpt");
   * cp.record(new Map([["req-1", 5]]), []); // frames 0..4 processed
   * cp.lost("req-1", 5, 8); // frame 8 arrived: 5..7 counted lost
   * cp.close();
   * ```
   */
  lost(requestId: string, from: number, to: number): void {
    if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && 0 <= from && from < to)) {
      return;
    }
    const key = keyOf(requestId);
    const st = this.#state(key);
    from = Math.max(from, st.p);
    if (from < to) st.gaps = addRange(st.gaps, from, to);
    this.#append([[key, storedOf(st)]], []);
  }

  /** The live state of a request key, made the most recently recorded (created at 0). */
  #state(key: string): State {
    // recorded now: the most recent, so the bound drops the least recently recorded
    let st = this.#next.use(key);
    if (st === undefined) this.#next.set(key, st = { p: 0, gaps: [] });
    while (this.#next.size > this.#max) this.#next.delete(this.#next.oldest()!);
    return st;
  }

  #append(states: Iterable<[string, Stored]>, ended: string[]): void {
    for (const key of ended) this.#next.delete(key);
    this.#write(this.#framer.frame(recordJson(states, ended)));
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

  /** Apply one record read from the file: each state it holds replaces the one before. */
  #apply(body: { s?: Record<string, unknown>; e?: readonly string[] }): void {
    // keyOf: a file an older version wrote may hold long ids as they were
    for (const [id, v] of Object.entries(body.s ?? {})) {
      const st = stateOf(v);
      if (!st) continue;
      const key = keyOf(id);
      this.#next.set(key, st); // the most recent: the bound drops the least recently recorded
    }
    for (const id of body.e ?? []) this.#next.delete(keyOf(id));
    while (this.#next.size > this.#max) this.#next.delete(this.#next.oldest()!);
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
    const states = [...this.#next].map(([key, st]): [string, Stored] => [key, storedOf(st)]);
    const framed = frameRecord(enc.encode(recordJson(states)));
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
