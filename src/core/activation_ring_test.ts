import assert from "node:assert/strict";
import { ActivationRing } from "./activation_ring.ts";
import { childJson } from "../../tests/helpers/child_deno.ts";

Deno.test("activation ring: rows come back by request and position, copied", () => {
  const ring = new ActivationRing(4, 2);
  const frame = new Float32Array([1, 2, 3, 4, 5, 6]);
  ring.putRows("a", 10, 3, frame);
  frame[0] = 99; // the ring holds its own copy
  assert.deepEqual([...ring.get("a", 10)!], [1, 2]);
  assert.deepEqual([...ring.get("a", 12)!], [5, 6]);
  assert.equal(ring.get("a", 13), null);
  assert.equal(ring.get("b", 10), null);
  assert.equal(ring.size, 3);
});

Deno.test("activation ring: bounded; the oldest token is overwritten", () => {
  const ring = new ActivationRing(2, 1);
  ring.put("a", 0, new Float32Array([1]));
  ring.put("b", 0, new Float32Array([2]));
  ring.put("c", 0, new Float32Array([3])); // overwrites a/0
  assert.equal(ring.get("a", 0), null);
  assert.deepEqual([...ring.get("b", 0)!], [2]);
  assert.deepEqual([...ring.get("c", 0)!], [3]);
  assert.equal(ring.size, 2);
  // writing a held key again updates it in place
  ring.put("c", 0, new Float32Array([4]));
  assert.deepEqual([...ring.get("c", 0)!], [4]);
  assert.deepEqual([...ring.get("b", 0)!], [2]);
  assert.throws(() => new ActivationRing(0, 4), RangeError);
});

/** The ring's contract, kept as simply as possible: one key per token, oldest slot reused. */
class ReferenceRing {
  readonly keys: string[];
  readonly rows: number[][];
  readonly slots = new Map<string, number>();
  next = 0;
  constructor(readonly capacity: number) {
    this.keys = new Array(capacity).fill("");
    this.rows = new Array(capacity).fill([]);
  }
  put(id: string, pos: number, row: number[]): void {
    const key = `${id}/${pos}`;
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.next;
      this.next = (this.next + 1) % this.capacity;
      if (this.keys[slot]) this.slots.delete(this.keys[slot]);
      this.keys[slot] = key;
      this.slots.set(key, slot);
    }
    this.rows[slot] = row;
  }
  get(id: string, pos: number): number[] | null {
    const slot = this.slots.get(`${id}/${pos}`);
    return slot === undefined ? null : this.rows[slot];
  }
}

Deno.test("activation ring: frames kept as runs agree with one-key-per-token, wraps and rewrites included", () => {
  agreesWithReference({ capacity: 37, requests: 5, maxTokens: 9, ops: 3000 });
});

Deno.test("activation ring: decode steps of one token (hundreds of runs per request) agree too", () => {
  agreesWithReference({ capacity: 300, requests: 2, maxTokens: 1, ops: 3000 });
});

function agreesWithReference(
  o: { capacity: number; requests: number; maxTokens: number; ops: number },
): void {
  // a small deterministic generator (not the code under test)
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const dIn = 3, capacity = o.capacity;
  const ring = new ActivationRing(capacity, dIn);
  const ref = new ReferenceRing(capacity);
  const next = new Map<string, number>();
  let value = 0;
  for (let op = 0; op < o.ops; op++) {
    const id = `r${rand(o.requests)}`;
    const tokens = rand(10) === 0 ? capacity + rand(5) : 1 + rand(o.maxTokens);
    // mostly the next positions; sometimes a re-send of earlier ones (held: updated in place)
    const start = rand(6) === 0 ? Math.max(0, (next.get(id) ?? 0) - rand(12)) : next.get(id) ?? 0;
    next.set(id, Math.max(next.get(id) ?? 0, start + tokens));
    const data = new Float32Array(tokens * dIn);
    for (let i = 0; i < data.length; i++) data[i] = value++;
    if (rand(4) === 0) {
      for (let t = 0; t < tokens; t++) {
        ring.put(id, start + t, data.subarray(t * dIn, (t + 1) * dIn));
      }
    } else ring.putRows(id, start, tokens, data);
    for (let t = 0; t < tokens; t++) {
      ref.put(id, start + t, [...data.subarray(t * dIn, (t + 1) * dIn)]);
    }
    assert.equal(ring.size, ref.slots.size, `size after op ${op}`);
    for (const [rid, end] of next) {
      for (let p = Math.max(0, end - 60); p < end; p++) {
        const got = ring.get(rid, p);
        assert.deepEqual(got && [...got], ref.get(rid, p), `${rid}/${p} after op ${op}`);
      }
    }
  }
}

Deno.test("activation ring: an overwritten token's run is free to be collected", async () => {
  // one request, one token a frame, the ring full: each put empties the oldest run. Kept in
  // the request's queue until it is compacted, emptied runs outlived the young generation by
  // the thousand; the heap must not grow by a run per put (about 55 bytes each when kept)
  const ring = new URL("./activation_ring.ts", import.meta.url).href;
  const seen = await childJson<{ bytesPerPut: number }>(
    `import { ActivationRing } from "${ring}";
    const heap = () => { for (let i = 0; i < 3; i++) globalThis.gc(); return Deno.memoryUsage().heapUsed; };
    heap(); // what start-up left behind is collected before anything is measured
    const capacity = 16384, puts = 15000, row = new Float32Array(1);
    const r = new ActivationRing(capacity, 1);
    let p = 0;
    for (; p < capacity + 1000; p++) r.putRows("req", p, 1, row);
    const before = heap();
    // still short of the request's compaction (more emptied runs than live ones)
    for (const end = p + puts; p < end; p++) r.putRows("req", p, 1, row);
    console.log(JSON.stringify({ bytesPerPut: (heap() - before) / puts, size: r.size }));`,
    "--expose-gc",
  );
  assert.ok(
    seen.bytesPerPut < 25,
    `the heap grew ${seen.bytesPerPut.toFixed(1)} bytes per put with the ring full`,
  );
});
