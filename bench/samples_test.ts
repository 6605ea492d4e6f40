/** Latency samples in a preallocated Float64Array. */
import assert from "node:assert/strict";
import { percentileOfSorted, Samples } from "./samples.ts";

Deno.test("Samples: numeric order (not string order), growth past the capacity, clear keeps the buffer", () => {
  const s = new Samples(2);
  for (const v of [10, 9, 100, 1.5, -2]) s.push(v);
  assert.equal(s.length, 5);
  assert.equal(s.capacity, 8); // 2 → 4 → 8
  assert.deepEqual([...s.sorted()], [-2, 1.5, 9, 10, 100]);
  s.clear();
  assert.equal(s.length, 0);
  assert.equal(s.capacity, 8);
  s.push(7);
  assert.deepEqual([...s.sorted()], [7]);
});

Deno.test("Samples: an empty list sorts to nothing", () => {
  assert.deepEqual([...new Samples(16).sorted()], []);
});

Deno.test("percentileOfSorted: index ⌊p/100 · n⌋, the last for p = 100, null when empty", () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
  assert.equal(percentileOfSorted(hundred, 50), 51);
  assert.equal(percentileOfSorted(hundred, 99), 100);
  assert.equal(percentileOfSorted(hundred, 100), 100);
  assert.equal(percentileOfSorted(hundred, 0), 1);
  assert.equal(percentileOfSorted([7], 99), 7);
  assert.equal(percentileOfSorted([], 99), null);
});
