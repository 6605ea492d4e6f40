import assert from "node:assert/strict";
import { ActivationRing } from "./activation_ring.ts";

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
