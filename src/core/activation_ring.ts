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
  /**
   * Each request's runs of consecutive positions in consecutive slots,
   * oldest first. A frame is one run (two where it wraps), so keeping a
   * frame costs one object and one copy, not a key and a map entry per token.
   */
  readonly #runs = new Map<string, RequestRuns>();
  /** The run each slot belongs to (null: empty). */
  readonly #slotRun: (Run | null)[];
  #size = 0;
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
    // commit every page now (fill writes them): the first write to each would otherwise fault
    // on the hot path, about 30 µs a one-token step while the ring fills (bench/gate.ts)
    this.#data.fill(0);
    this.#slotRun = new Array(capacity).fill(null);
  }

  /** Tokens held. */
  get size(): number {
    return this.#size;
  }

  /** Keep `row` (`dIn` values, copied) as token `position` of `requestId`, overwriting the oldest. */
  put(requestId: string, position: number, row: Float32Array): void {
    const slot = this.#find(requestId, position);
    if (slot >= 0) this.#data.set(row.subarray(0, this.dIn), slot * this.dIn);
    else this.#append(requestId, position, 1, row);
  }

  /** Keep every token of a frame-like `{ requestId, position, tokens, data }`. */
  putRows(requestId: string, position: number, tokens: number, data: Float32Array): void {
    if (!this.#holdsAny(requestId, position, tokens)) {
      this.#append(requestId, position, tokens, data);
      return;
    }
    // some positions are held already: those are updated in place
    for (let t = 0; t < tokens; t++) {
      this.put(requestId, position + t, data.subarray(t * this.dIn, (t + 1) * this.dIn));
    }
  }

  /** A copy of token `position` of `requestId`, or null when it is not (or no longer) held. */
  get(requestId: string, position: number): Float32Array | null {
    const slot = this.#find(requestId, position);
    if (slot < 0) return null;
    return this.#data.slice(slot * this.dIn, (slot + 1) * this.dIn);
  }

  /** The slot holding token `position` of `requestId`, or -1. */
  #find(requestId: string, position: number): number {
    const req = this.#runs.get(requestId);
    if (req === undefined || position >= req.end) return -1;
    const runs = req.runs;
    for (let i = runs.length - 1; i >= req.head; i--) {
      const r = runs[i]!, d = position - r.position;
      if (d >= 0 && d < r.tokens) return r.slot + d;
    }
    return -1;
  }

  /** Is any of positions `[position, position + tokens)` of `requestId` held? */
  #holdsAny(requestId: string, position: number, tokens: number): boolean {
    const req = this.#runs.get(requestId);
    // positions only grow, as a rule: past every held one, nothing to look up
    if (req === undefined || position >= req.end) return false;
    for (let i = req.head; i < req.runs.length; i++) {
      const r = req.runs[i]!;
      if (r.position < position + tokens && position < r.position + r.tokens) return true;
    }
    return false;
  }

  /** Write `tokens` rows (none held yet) into the next slots, as runs that stop at the wrap. */
  #append(requestId: string, position: number, tokens: number, data: Float32Array): void {
    const dIn = this.dIn;
    for (let done = 0; done < tokens;) {
      const n = Math.min(tokens - done, this.capacity - this.#next);
      const first = this.#next;
      for (let s = first; s < first + n; s++) this.#evict(s);
      const run: Run = { requestId, position: position + done, tokens: n, slot: first };
      for (let s = first; s < first + n; s++) this.#slotRun[s] = run;
      let req = this.#runs.get(requestId);
      if (req === undefined) this.#runs.set(requestId, req = { runs: [], head: 0, end: 0 });
      req.runs.push(run);
      req.end = Math.max(req.end, run.position + n);
      this.#data.set(data.subarray(done * dIn, (done + n) * dIn), first * dIn);
      this.#size += n;
      this.#next = (first + n) % this.capacity;
      done += n;
    }
  }

  /**
   * Empty `slot` before it is overwritten. Slots are overwritten in ring
   * order, so the slot is always the first one left of its run, and the run
   * its request's oldest.
   */
  #evict(slot: number): void {
    const r = this.#slotRun[slot];
    if (r === null) return;
    this.#slotRun[slot] = null;
    this.#size--;
    r.slot++;
    r.position++;
    r.tokens--;
    if (r.tokens > 0) return;
    const req = this.#runs.get(r.requestId)!;
    // an emptied run must not stay referenced until the next compaction: runs would then
    // outlive the young generation by the thousand
    req.runs[req.head++] = undefined;
    if (req.head === req.runs.length) this.#runs.delete(r.requestId);
    else if (req.head > 64 && req.head * 2 > req.runs.length) {
      req.runs = req.runs.slice(req.head);
      req.head = 0;
    }
  }
}

/**
 * A request's runs, oldest first from `head` (a queue), and a bound past
 * every position it holds.
 */
interface RequestRuns {
  /** Emptied (`undefined`) before `head`. */
  runs: (Run | undefined)[];
  head: number;
  end: number;
}

/** Consecutive positions of one request in consecutive slots. */
interface Run {
  readonly requestId: string;
  position: number;
  tokens: number;
  slot: number;
}
