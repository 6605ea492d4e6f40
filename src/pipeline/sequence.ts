/**
 * Sequence tracking, the second half of intake: each request's `Lw-Seq`
 * followed as its frames arrive. A gap is frames lost before they reached
 * us; a seq already passed is a re-sent frame, which must not be evaluated
 * twice. Shared by `serve` (which counts and logs each step) and offline
 * replay (which counts them in its stats).
 *
 * @module
 */
import { RecencyMap } from "../core/recency_map.ts";
import type { Frame } from "../core/frame/format.ts";

/** What the previous run left for one request (see `serve/checkpoints.ts`). */
export interface Resume {
  /** The seq of the first frame not processed: the request resumes here. */
  readonly next: number;
  /** Every seq gap below this one was counted lost already (at least `next`). */
  readonly counted: number;
  /** Frames in `[next, counted)` counted lost already. */
  readonly lost: number;
}

/**
 * Of the frames `[resume.next, seq)` a request resuming with frame `seq`
 * never had processed, those not counted lost already. Exact when `seq` is
 * at least `resume.counted` (the usual case: the tap does not send a frame
 * twice); otherwise it assumes the counted frames lie just below
 * `resume.counted`, so it may over-count, never under-count.
 *
 * @example
 * ```ts
 * import { uncountedBefore } from "./sequence.ts";
 * // frames 0..4 processed; at intake 5..7 were counted lost (frame 8 showed the gap)
 * uncountedBefore({ next: 5, counted: 8, lost: 3 }, 10); // 2: frames 8 and 9
 * ```
 */
export function uncountedBefore(resume: Resume, seq: number): number {
  if (seq <= resume.next) return 0;
  const already = seq >= resume.counted
    ? resume.lost
    : Math.max(0, resume.lost - (resume.counted - seq));
  return Math.max(0, seq - resume.next - already);
}

/** What {@linkcode SequenceTracker.track} found for one frame. */
export interface SeqStep {
  /** False for a re-sent frame (a seq already passed): drop it. */
  accepted: boolean;
  /** The seq expected from the request before this frame. */
  expected: number;
  /** Frames missing before this one, not counted before (0 when none). */
  lost: number;
  /** The request resumed from a checkpoint of the previous run with this frame. */
  resumed: boolean;
  /** The request's first frame tracked (since it began, ended or was evicted). */
  first: boolean;
  /** A request evicted to make room for this one (capacity). */
  evicted?: string;
}

/** Options of {@linkcode SequenceTracker}. */
export interface SequenceTrackerOptions {
  /** At most this many requests are tracked; the least recently seen goes first. @default 100000 */
  maxRequests?: number;
  /** Where a request the previous run was in the middle of resumes (a checkpoint's `take`). */
  resume?: (requestId: string) => Resume | undefined;
}

interface RequestSeq {
  lastSeen: number;
  tokens: number;
  /** The Lw-Seq expected next. */
  nextSeq: number;
}

/**
 * Each request's expected `Lw-Seq`, least recently seen first.
 *
 * @example Follow a request with a gap and a repeat
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import { SequenceTracker } from "./sequence.ts";
 * const seqs = new SequenceTracker();
 * const frame = (seq: number) => ({ requestId: "r1", seq, tokens: 1, endOfRequest: false }) as Frame;
 * seqs.track(frame(0), 0).lost; // 0
 * seqs.track(frame(3), 0).lost; // 2: frames 1 and 2 never came
 * seqs.track(frame(2), 0).accepted; // false: a seq already passed
 * ```
 */
export class SequenceTracker {
  /** Least recently seen first (a use moves an entry: no map table rebuilt per frame). */
  readonly #requests = new RecencyMap<string, RequestSeq>();
  readonly #max: number;
  readonly #resume?: (requestId: string) => Resume | undefined;

  constructor(opts: SequenceTrackerOptions = {}) {
    this.#max = opts.maxRequests ?? 100_000;
    this.#resume = opts.resume;
  }

  /** Requests tracked. */
  get size(): number {
    return this.#requests.size;
  }

  /** The capacity ({@linkcode SequenceTrackerOptions.maxRequests}). */
  get maxRequests(): number {
    return this.#max;
  }

  /**
   * Follow `frame` (received at `now`, ms): a gap counts the frames missing
   * before it; a seq already passed is not accepted. A request's state goes
   * with its end marker.
   */
  track(frame: Frame, now: number): SeqStep {
    // a frame of a tracked request makes it the most recently seen, so capacity evicts the stalest
    let s = this.#requests.use(frame.requestId);
    let resumed: Resume | undefined;
    let evicted: string | undefined;
    const first = s === undefined;
    if (!s) {
      // a request the last run was in the middle of resumes from its
      // checkpoint: the frames since then never reached a durable state
      resumed = this.#resume?.(frame.requestId);
      s = { lastSeen: 0, tokens: 0, nextSeq: resumed?.next ?? 0 };
      this.#requests.set(frame.requestId, s);
      if (this.#requests.size > this.#max) {
        const oldest = this.#requests.oldest()!;
        this.#requests.delete(oldest);
        evicted = oldest;
      }
    }
    const expected = s.nextSeq;
    let lost = 0;
    if (frame.seq > expected) {
      // after a restart, what the last run counted at intake is not counted again
      lost = resumed ? uncountedBefore(resumed, frame.seq) : frame.seq - expected;
    } else if (frame.seq < expected) {
      // NATS keeps one publisher's order, so a seq already passed is a re-sent
      // frame: evaluating it again would count its tokens twice in the windows
      s.lastSeen = now;
      return {
        accepted: false,
        expected,
        lost: 0,
        resumed: false,
        first: false,
        ...(evicted ? { evicted } : {}),
      };
    }
    s.nextSeq = Math.max(expected, frame.seq + 1);
    s.lastSeen = now;
    s.tokens += frame.tokens;
    if (frame.endOfRequest) this.#requests.delete(frame.requestId);
    return {
      accepted: true,
      expected,
      lost,
      resumed: resumed !== undefined,
      first,
      ...(evicted ? { evicted } : {}),
    };
  }

  /** Forget every request `which` picks (its partition moved elsewhere); returns their ids. */
  forget(which: (requestId: string) => boolean): string[] {
    const gone: string[] = [];
    for (const id of this.#requests.keys()) {
      if (which(id)) {
        this.#requests.delete(id);
        gone.push(id);
      }
    }
    return gone;
  }

  /**
   * Forget every request last seen before `cutoff` (ms); returns each with
   * the tokens it sent.
   */
  sweep(cutoff: number): { requestId: string; tokens: number }[] {
    const expired: { requestId: string; tokens: number }[] = [];
    for (const [id, s] of this.#requests) {
      if (s.lastSeen < cutoff) {
        this.#requests.delete(id);
        expired.push({ requestId: id, tokens: s.tokens });
      }
    }
    return expired;
  }
}
