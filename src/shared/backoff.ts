/**
 * Capped exponential backoff, for every retry loop of the project. Pure.
 *
 * @module
 */

/**
 * Capped exponential backoff: `delay` starts at `initialMs` and doubles on
 * each {@linkcode Backoff.grow} up to `maxMs`; {@linkcode Backoff.reset}
 * starts over. Shared by the sinks' delivery queue, the JetStream sink's
 * publish and replay loops, and the lease bucket's open.
 *
 * @example
 * ```ts
 * import { Backoff } from "./backoff.ts";
 * const b = new Backoff(100, 250);
 * b.delay; // 100
 * b.grow(); b.delay; // 200
 * b.grow(); b.delay; // 250
 * b.reset(); b.delay; // 100
 * ```
 */
export class Backoff {
  #delay: number;
  constructor(readonly initialMs: number, readonly maxMs: number) {
    this.#delay = initialMs;
  }
  /** The wait before the next attempt, in ms. */
  get delay(): number {
    return this.#delay;
  }
  /** After a failed attempt: double the wait, capped. */
  grow(): void {
    this.#delay = Math.min(this.#delay * 2, this.maxMs);
  }
  /** After a success: back to the first wait. */
  reset(): void {
    this.#delay = this.initialMs;
  }
}
