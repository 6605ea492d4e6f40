import assert from "node:assert/strict";
import { compactedBytes, unpackCompacted } from "./compacted.ts";

Deno.test("compacted: counts, then indices, then values; a count past cap is reported, not read past", () => {
  const rows = 2, cap = 3;
  const buf = new ArrayBuffer(compactedBytes(rows, cap));
  assert.equal(buf.byteLength, 2 * 7 * 4);
  new Uint32Array(buf, 0, 2).set([2, 5]);
  new Uint32Array(buf, 8, 6).set([1, 4, 0, 0, 2, 9]);
  new Float32Array(buf, 32, 6).set([0.5, 1.5, 0, 3, 4, 5]);
  const { latents, maxCount } = unpackCompacted(buf, rows, cap);
  assert.equal(maxCount, 5);
  assert.deepEqual([...latents[0].indices], [1, 4]);
  assert.deepEqual([...latents[0].values], [0.5, 1.5]);
  assert.deepEqual([...latents[1].indices], [0, 2, 9]);
  assert.deepEqual([...latents[1].values], [3, 4, 5]);
});
