import assert from "node:assert/strict";
import { ByteSlab } from "./byte_slab.ts";

// the reference is the platform's own encoder, written out byte by byte where it matters
Deno.test("ByteSlab.utf8: ASCII, two- three- and four-byte characters and lone surrogates, as TextEncoder", () => {
  const slab = new ByteSlab();
  assert.deepEqual([...slab.utf8("é")], [0xc3, 0xa9]);
  assert.deepEqual([...slab.utf8("€")], [0xe2, 0x82, 0xac]);
  assert.deepEqual([...slab.utf8("😀")], [0xf0, 0x9f, 0x98, 0x80]);
  assert.deepEqual([...slab.utf8("\ud800")], [0xef, 0xbf, 0xbd]);
  assert.equal(slab.utf8("").length, 0);
  const te = new TextEncoder();
  for (
    const s of [
      '{"v":1,"request_id":"r1","seq":3}',
      "a\u0000b",
      "x".repeat(1000),
      "ü😀\udfff",
      "ab\u007fé€",
      "abc😀x\ud800y",
    ]
  ) {
    assert.deepEqual(slab.utf8(s), te.encode(s));
  }
});

Deno.test("ByteSlab: earlier views keep their bytes across later writes and new slabs", () => {
  const slab = new ByteSlab(64);
  const te = new TextEncoder();
  const strings = Array.from({ length: 200 }, (_, i) => `msg-${i}-${"é".repeat(i % 5)}`);
  const views = strings.map((s) => slab.utf8(s));
  const source = new Uint8Array(16);
  const copies = Array.from({ length: 50 }, (_, i) => {
    source.fill(i);
    return slab.copy(source);
  });
  source.fill(255); // the copies are not views of the source
  strings.forEach((s, i) => assert.deepEqual(views[i], te.encode(s), s));
  copies.forEach((c, i) => assert.deepEqual(c, new Uint8Array(16).fill(i)));
  // views of one slab share its buffer, one after the other
  const a = slab.utf8("ab"), b = slab.utf8("cd");
  assert.equal(a.buffer, b.buffer);
  assert.equal(b.byteOffset, a.byteOffset + 2);
});

Deno.test("ByteSlab: past a quarter of a slab, a buffer of its own", () => {
  const slab = new ByteSlab(64);
  const long = slab.utf8("y".repeat(6)); // up to 18 bytes: more than 16
  assert.equal(long.byteOffset, 0);
  assert.equal(long.buffer.byteLength, 6);
  const big = slab.copy(new Uint8Array(17).fill(7));
  assert.equal(big.buffer.byteLength, 17);
  assert.deepEqual(big, new Uint8Array(17).fill(7));
});

Deno.test("ByteSlab: a slab size that cannot hold a message is refused", () => {
  assert.throws(() => new ByteSlab(10), {
    name: "RangeError",
    message: /expected an integer ≥ 64 bytes, found 10/,
  });
  assert.throws(() => new ByteSlab(Number.NaN), { name: "RangeError", message: /found NaN/ });
});
