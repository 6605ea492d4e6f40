/**
 * The policy engine's per-request state and its bounds: state exists only
 * for requests seen, and goes when a request ends, after `ttlMs` without a
 * frame, or, past `maxRequests`, for the request seen least recently; each
 * way counted (engine.ts, "Bounded memory"). At a hot reload the states of
 * the rules kept move to their new indices. Pure: time comes from an
 * injected clock.
 *
 * @module
 */
import { RecencyMap } from "../recency_map.ts";
import {
  type EngineStats,
  PolicyEngineOptionError,
  type RequestState,
  type RuleState,
} from "./engine_types.ts";
import type { GateCounts } from "./firing_gate.ts";

/** Options of {@linkcode RequestStates} (the engine's, defaults applied). */
export interface RequestStatesOptions {
  /** At most this many requests have state; the least recently seen goes first. */
  maxRequests: number;
  /** State of a request with no frame for this long is evicted by `sweep`. */
  ttlMs: number;
  /** Clock in milliseconds. */
  now: () => number;
}

/**
 * The state of each request seen, least recently seen first, bounded by
 * count and by idle time, with the counts of what went and why.
 *
 * @example
 * ```ts
 * import { RequestStates } from "./request_states.ts";
 * let now = 0;
 * const states = new RequestStates({ maxRequests: 2, ttlMs: 100, now: () => now });
 * states.use("r1").start[0] = 0; // created on first use, seen now
 * now = 500;
 * states.sweep(now); // 1: r1 sent nothing for 500 ms
 * ```
 */
export class RequestStates {
  readonly #max: number;
  readonly #ttl: number;
  readonly #now: () => number;
  /** Least recently seen first (a use moves an entry: no map table rebuilt per batch). */
  readonly #requests = new RecencyMap<string, RequestState>();
  readonly #stats = { evicted: { ttl: 0, capacity: 0 }, ended: 0 };

  constructor(opts: RequestStatesOptions) {
    this.#max = opts.maxRequests;
    this.#ttl = opts.ttlMs;
    this.#now = opts.now;
    if (!Number.isInteger(this.#max) || this.#max < 1) {
      throw new PolicyEngineOptionError(`maxRequests: expected an integer ≥ 1, found ${this.#max}`);
    }
    if (!(this.#ttl > 0)) {
      throw new PolicyEngineOptionError(`ttlMs: expected a duration > 0, found ${this.#ttl}`);
    }
  }

  /** At most this many requests have state (the least recently seen is evicted past it). */
  get maxRequests(): number {
    return this.#max;
  }

  /**
   * The engine's counters: these with the gate's `counts`; `activeRequests`
   * is the number of requests with state now.
   *
   * @example
   * ```ts
   * import { RequestStates } from "./request_states.ts";
   * const states = new RequestStates({ maxRequests: 10, ttlMs: 1000, now: Date.now });
   * states.stats({ suppressed: 0, rateLimited: 0, excepted: 0 }).activeRequests; // 0
   * ```
   */
  stats(g: GateCounts): EngineStats {
    const s = this.#stats;
    return {
      activeRequests: this.#requests.size,
      evicted: { ...s.evicted },
      ended: s.ended,
      suppressed: g.suppressed,
      rateLimited: g.rateLimited,
      excepted: g.excepted,
    };
  }

  /**
   * The state of request `id`, created when new (evicting the least recently
   * seen past `maxRequests`), and now its most recently seen.
   *
   * @example
   * ```ts
   * import { RequestStates } from "./request_states.ts";
   * const states = new RequestStates({ maxRequests: 10, ttlMs: 1000, now: Date.now });
   * const req = states.use("r1");
   * req.rules.size; // 0
   * ```
   */
  use(id: string): RequestState {
    // a use makes the request the most recently seen, so capacity evicts the stalest
    let req = this.#requests.use(id);
    if (!req) {
      if (this.#requests.size >= this.#max) {
        this.#requests.delete(this.#requests.oldest()!);
        this.#stats.evicted.capacity++;
      }
      req = { lastSeen: 0, start: [NaN, NaN, NaN], rules: new Map() };
      this.#requests.set(id, req);
    }
    req.lastSeen = this.#now();
    return req;
  }

  /**
   * Move every request's rule states to the rules' indices in a new set:
   * `remap[i]` is the new index of rule `i`, or -1 for a rule that goes
   * (its state goes with it).
   *
   * @example
   * ```ts
   * import type { RequestStates } from "./request_states.ts";
   * declare const states: RequestStates;
   * states.remap([1, -1]); // rule 0 is now rule 1; rule 1 is gone
   * ```
   */
  remap(remap: readonly number[]): void {
    for (const req of this.#requests.values()) {
      const rules = new Map<number, RuleState>();
      for (const [i, rs] of req.rules) {
        const j = remap[i];
        if (j >= 0) rules.set(j, rs);
      }
      req.rules = rules;
    }
  }

  /**
   * Drop the state of request `id` (its last frame was seen). Returns whether it had any.
   *
   * @example
   * ```ts
   * import type { RequestStates } from "./request_states.ts";
   * declare const states: RequestStates;
   * states.end("r1");
   * ```
   */
  end(id: string): boolean {
    const had = this.#requests.delete(id);
    if (had) this.#stats.ended++;
    return had;
  }

  /**
   * Evict the state of requests that sent nothing for `ttlMs` before `now`.
   * Returns the number of requests evicted.
   *
   * @example
   * ```ts
   * import type { RequestStates } from "./request_states.ts";
   * declare const states: RequestStates;
   * const evicted = states.sweep(Date.now());
   * ```
   */
  sweep(now: number): number {
    let n = 0;
    // least recently seen first: stop at the first request still live
    for (const [id, req] of this.#requests) {
      if (now - req.lastSeen <= this.#ttl) break;
      this.#requests.delete(id);
      n++;
    }
    this.#stats.evicted.ttl += n;
    return n;
  }
}
