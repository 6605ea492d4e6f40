/**
 * The tap's open requests: each one's seq counter and next position, kept
 * from its first frame to its end-of-request marker, least recently
 * published first, and bounded so that requests aborted without `end()`
 * cannot grow the table without end.
 *
 * @module
 */
import type { RequestEnd } from "./frame_plan.ts";
import type { StepHeaders } from "./step_headers.ts";

/** What the tap remembers of an open request between calls. */
export interface RequestState extends RequestEnd {
  /** The last frame's key, and its header template once a frame repeated it. */
  headers?: StepHeaders;
}

/**
 * Open requests, at most `max` of them: past the bound the stalest (least
 * recently published) is forgotten and counted.
 *
 * @example
 * ```ts
 * const open = new OpenRequests(1);
 * open.touch("a", { seq: 1, nextPosition: 4, dModel: 768 }); // undefined
 * open.touch("b", { seq: 1, nextPosition: 2, dModel: 768 }); // "a"
 * open.evicted; // 1
 * ```
 */
export class OpenRequests {
  readonly #requests = new Map<string, RequestState>();
  readonly #max: number;
  #evicted = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** Requests open now. */
  get size(): number {
    return this.#requests.size;
  }

  /** Requests forgotten because more than the bound were open. */
  get evicted(): number {
    return this.#evicted;
  }

  /** An open request's state. */
  get(requestId: string): RequestState | undefined {
    return this.#requests.get(requestId);
  }

  /**
   * Record `requestId`'s state as the most recently published; returns the
   * request forgotten to stay within the bound, if one was.
   */
  touch(requestId: string, state: RequestState): string | undefined {
    // re-insert so Map order is least recently published first
    this.#requests.delete(requestId);
    this.#requests.set(requestId, state);
    if (this.#requests.size <= this.#max) return undefined;
    const [stalest] = this.#requests.keys();
    this.#requests.delete(stalest);
    this.#evicted++;
    return stalest;
  }

  /** Close `requestId`: its state, which is forgotten. */
  take(requestId: string): RequestState | undefined {
    const state = this.#requests.get(requestId);
    if (state) this.#requests.delete(requestId);
    return state;
  }
}
