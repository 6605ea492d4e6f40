/**
 * A bounded ring of recent token activations, keyed by request and position,
 * so the tokens an alert flags (which may span earlier frames, for pooled
 * rules) can be encoded in full afterwards as evidence. One preallocated
 * `[capacity, dIn]` buffer: the oldest token is overwritten, never grown.
 * Pure.
 *
 * @module
 */

/**
 * Recent activations, `capacity` tokens of `dIn` values.
 *
 * @example
 * ```ts
 * const row = new Float32Array(768);
 * const ring = new ActivationRing(4096, 768);
 * ring.put("req-1", 12, row);
 * ring.get("req-1", 12); // a copy of row, or null once overwritten
 * ```
 */
export class ActivationRing {
  readonly capacity: number;
  readonly dIn: number;
  readonly #data: Float32Array;
  /** Key of each slot (`request\0position`), "" when empty. */
  readonly #keys: string[];
  readonly #slots = new Map<string, number>();
  #next = 0;

  constructor(capacity: number, dIn: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`activation ring: capacity: expected an integer ≥ 1, found ${capacity}`);
    }
    if (!Number.isSafeInteger(dIn) || dIn < 1) {
      throw new RangeError(`activation ring: dIn: expected an integer ≥ 1, found ${dIn}`);
    }
    this.capacity = capacity;
    this.dIn = dIn;
    this.#data = new Float32Array(capacity * dIn);
    this.#keys = new Array(capacity).fill("");
  }

  /** Tokens held. */
  get size(): number {
    return this.#slots.size;
  }

  /** Keep `row` (`dIn` values, copied) as token `position` of `requestId`, overwriting the oldest. */
  put(requestId: string, position: number, row: Float32Array): void {
    const key = `${requestId}\u0000${position}`;
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = this.#next;
      this.#next = (this.#next + 1) % this.capacity;
      const old = this.#keys[slot];
      if (old) this.#slots.delete(old);
      this.#keys[slot] = key;
      this.#slots.set(key, slot);
    }
    this.#data.set(row.subarray(0, this.dIn), slot * this.dIn);
  }

  /** Keep every token of a frame-like `{ requestId, position, tokens, data }`. */
  putRows(requestId: string, position: number, tokens: number, data: Float32Array): void {
    for (let t = 0; t < tokens; t++) {
      this.put(requestId, position + t, data.subarray(t * this.dIn, (t + 1) * this.dIn));
    }
  }

  /** A copy of token `position` of `requestId`, or null when it is not (or no longer) held. */
  get(requestId: string, position: number): Float32Array | null {
    const slot = this.#slots.get(`${requestId}\u0000${position}`);
    if (slot === undefined) return null;
    return this.#data.slice(slot * this.dIn, (slot + 1) * this.dIn);
  }
}
