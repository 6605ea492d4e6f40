import assert from "node:assert/strict";
import {
  alignedF32Copy,
  releaseAlignedCopy,
  SLAB_BYTES,
  slabF32,
  slabStats,
} from "./aligned_copy.ts";

/** Little-endian f32 bytes of `values`, written by DataView (independent of the code under test). */
function unalignedBytes(values: number[], offset: number): Uint8Array {
  const raw = new Uint8Array(offset + values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(offset + i * 4, v, true));
  return raw.subarray(offset);
}

/** Copy `bytes` until a copy starts a new slab (whatever earlier tests left); that copy. */
function firstOfNewSlab(bytes: Uint8Array): Float32Array {
  let copy = alignedF32Copy(bytes), previous;
  do {
    previous = copy;
    copy = alignedF32Copy(bytes);
  } while (copy.buffer === previous.buffer);
  return copy;
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

Deno.test("aligned copy: a slab whose copies all came back is reused; copies still out are never overwritten", () => {
  const floats = (SLAB_BYTES / 4) / 4; // four copies fill a slab
  const bytes = (v: number) => unalignedBytes(new Array(floats).fill(v), 1);
  const start = firstOfNewSlab(bytes(1));
  const before = slabStats();
  const first = [start, ...[2, 3].map((v) => alignedF32Copy(bytes(v)))];
  const kept = alignedF32Copy(bytes(4)); // same slab as `first`, never handed back
  const second = [5, 6, 7, 8].map((v) => alignedF32Copy(bytes(v))); // the next slab
  for (const c of first) releaseAlignedCopy(c);
  for (const c of second) releaseAlignedCopy(c);
  releaseAlignedCopy(second[0]); // a second hand-back is ignored
  // the slab of `second` is all back; the slab of `first` and `kept` is not
  const third = [9, 10, 11, 12, 13].map((v) => alignedF32Copy(bytes(v)));
  const after = slabStats();
  assert.ok(after.reused > before.reused, "a slab was taken from the pool");
  assert.equal(third[0].buffer, second[0].buffer, "the slab whose copies all came back");
  assert.ok(kept.every((v) => v === 4), "a copy not handed back keeps its values");
  assert.ok(third.every((c) => c.buffer !== kept.buffer), "its slab is not reused");
  third.forEach((c, i) => assert.ok(c.every((v) => v === 9 + i), `copy ${i} of the reused slab`));
  // hand-backs of what this module did not carve are ignored
  releaseAlignedCopy(new Float32Array(4));
  // an empty payload (an end-of-request marker) at an odd offset, as the first copy or any other
  const empty = alignedF32Copy(new Uint8Array(3).subarray(1, 1));
  assert.equal(empty.length, 0);
  releaseAlignedCopy(empty);
});

Deno.test("aligned copy: an empty payload as a process's very first copy", async () => {
  // a fresh process: the module's state before any slab exists (module state is shared in here)
  const url = new URL("./aligned_copy.ts", import.meta.url).href;
  const code = `import { alignedF32Copy } from "${url}";
    const e = alignedF32Copy(new Uint8Array(3).subarray(1, 1));
    const x = alignedF32Copy(new Uint8Array(9).subarray(1));
    console.log(e.length, x.length);`;
  const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stderr: "piped" })
    .output();
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "0 2");
});

Deno.test("aligned copy: a copy handed back again after its slab was reused does not free the slab's new copies", () => {
  const floats = (SLAB_BYTES / 4) / 4; // four copies fill a slab
  const bytes = (v: number) => unalignedBytes(new Array(floats).fill(v), 1);
  const start = firstOfNewSlab(bytes(1));
  const first = [start, ...[2, 3, 4].map((v) => alignedF32Copy(bytes(v)))];
  for (const c of first) releaseAlignedCopy(c);
  const reusedFrom = first[0].buffer;
  const second = [10, 11, 12, 13].map((v) => alignedF32Copy(bytes(v)));
  assert.equal(second[0].buffer, reusedFrom, "the slab is reused");
  // stale hand-backs from the slab's earlier use
  for (const c of first) releaseAlignedCopy(c);
  const later = [20, 21, 22, 23, 24, 25, 26, 27].map((v) => alignedF32Copy(bytes(v)));
  assert.ok(later.every((c) => c.buffer !== reusedFrom), "not reused while its copies are out");
  second.forEach((c, i) => assert.ok(c.every((v) => v === 10 + i), `copy ${i} kept its values`));
});

Deno.test("aligned copy: slabF32 room is carved like a copy and handed back the same way", () => {
  const a = slabF32(16), b = slabF32(16);
  assert.equal(a.buffer, b.buffer, "consecutive rooms share a slab");
  assert.ok(b.byteOffset >= a.byteOffset + 64, "rooms do not overlap");
  a.fill(1);
  b.fill(2);
  assert.deepEqual([...new Set(a)], [1]);
  releaseAlignedCopy(a);
  releaseAlignedCopy(b);
  assert.equal(slabF32(0).length, 0);
  assert.equal(
    slabF32(SLAB_BYTES).buffer.byteLength,
    SLAB_BYTES * 4,
    "a large room is its own buffer",
  );
});
