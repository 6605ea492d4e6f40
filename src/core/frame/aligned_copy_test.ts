import assert from "node:assert/strict";
import { alignedF32Copy, SLAB_BYTES } from "./aligned_copy.ts";

/** Little-endian f32 bytes of `values`, written by DataView (independent of the code under test). */
function unalignedBytes(values: number[], offset: number): Uint8Array {
  const raw = new Uint8Array(offset + values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(offset + i * 4, v, true));
  return raw.subarray(offset);
}

Deno.test("aligned copy: the values, aligned, independent of the source", () => {
  const src = unalignedBytes([1.5, -2, 3.25], 3);
  const copy = alignedF32Copy(src);
  assert.deepEqual([...copy], [1.5, -2, 3.25]);
  assert.equal(copy.byteOffset % 4, 0);
  src.fill(0);
  assert.deepEqual([...copy], [1.5, -2, 3.25]);
});

Deno.test("aligned copy: consecutive copies share a slab without overlapping", () => {
  const copies = Array.from(
    { length: 50 },
    (_, i) => alignedF32Copy(unalignedBytes([i, i + 0.5, -i], 1)),
  );
  assert.ok(
    copies.some((c, i) => i > 0 && c.buffer === copies[i - 1].buffer),
    "carved from one slab",
  );
  copies[10].fill(99);
  copies.forEach((c, i) => {
    if (i !== 10) assert.deepEqual([...c], [i, i + 0.5, -i], `copy ${i}`);
  });
  // a slab runs out: the next copy starts a new one, earlier copies stay intact
  const big = (SLAB_BYTES / 4) / 4; // floats in the largest slab-carved copy
  const first = alignedF32Copy(unalignedBytes(new Array(big).fill(7), 2));
  for (let i = 0; i < 4; i++) alignedF32Copy(unalignedBytes(new Array(big).fill(i), 2));
  assert.ok(first.every((v) => v === 7));
});

Deno.test("aligned copy: a payload over a quarter slab gets its own buffer; a bad length is refused", () => {
  const n = SLAB_BYTES / 4 / 4 + 1;
  const copy = alignedF32Copy(unalignedBytes(new Array(n).fill(2), 1));
  assert.equal(copy.buffer.byteLength, n * 4);
  assert.throws(() => alignedF32Copy(new Uint8Array(6)), /expected a multiple of 4 bytes, found 6/);
});
