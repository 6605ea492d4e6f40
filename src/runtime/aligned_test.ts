import assert from "node:assert/strict";
import { alignedArray, isAligned, KERNEL_ALIGNMENT } from "./aligned.ts";

/** The address of `a`'s first element modulo the alignment, read independently of aligned.ts. */
function lineOffset(a: ArrayBufferView): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)) % BigInt(KERNEL_ALIGNMENT));
}

Deno.test("alignedArray: every array starts on a cache line, zeroed, of the length asked for", () => {
  // sizes from the heap (a few KB, at any multiple of 16) to mmap (16 bytes into a page)
  const kinds = [Float32Array, Int32Array, Uint8Array, Int8Array, Uint16Array] as const;
  const plain = new Set<number>();
  const kept: unknown[] = [];
  for (let i = 0; i < 60; i++) {
    const kind = kinds[i % kinds.length];
    const length = 100 + i * 7919;
    // typed as one kind for the checker: a union of constructors is not one constructor
    const a = alignedArray(kind as typeof Uint8Array, length);
    kept.push(a, new Uint8Array(48 + i * 16)); // other allocations in between, as in a process
    assert.equal(a.length, length);
    assert.equal(a.constructor, kind);
    assert.equal(lineOffset(a), 0, `${kind.name}(${length}) at ${lineOffset(a)} past a line`);
    assert.equal(isAligned(a), true);
    assert.ok(a.every((v) => v === 0));
    // the view leaves room for all its elements, and writing its last one stays inside it
    a[length - 1] = 1;
    assert.equal(a[length - 1], 1);
    const b = new (kind as typeof Uint8Array)(length);
    kept.push(b);
    plain.add(lineOffset(b));
  }
  // the arrays as allocated without it were not all on a line (what the kernels met before)
  assert.ok([...plain].some((o) => o !== 0), `plain offsets ${[...plain]}`);
});

Deno.test("alignedArray: a small array is aligned too, an empty one is plain", () => {
  // one 512-bit store of 16 outputs (64 watched latents' w16 batch of one) on one line
  for (let i = 0; i < 20; i++) {
    const a = alignedArray(Float32Array, 16);
    assert.equal(a.length, 16);
    assert.equal(lineOffset(a), 0);
  }
  const empty = alignedArray(Uint8Array, 0);
  assert.equal(empty.length, 0);
  assert.equal(empty.buffer.byteLength, 0);
});

Deno.test("alignedArray: hugePages starts a large array on a huge page, a small one on a line", () => {
  const huge = BigInt(2 * 1024 * 1024);
  for (const length of [2 * 1024 * 1024, 19 * 1024 * 1024 + 12_345]) {
    const a = alignedArray(Uint8Array, length, { hugePages: true });
    assert.equal(a.length, length);
    const address = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)));
    assert.equal(address % huge, 0n, `${length} bytes at ${address % huge} past a huge page`);
    assert.ok(a.every((v) => v === 0));
    a[length - 1] = 1;
    assert.equal(a[length - 1], 1);
  }
  // under one huge page: the cache line only, and no 2 MiB of padding
  const small = alignedArray(Float32Array, 1000, { hugePages: true });
  assert.equal(lineOffset(small), 0);
  assert.ok(small.buffer.byteLength < 1000 * 4 + 2 * KERNEL_ALIGNMENT);
});
