import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, fromF32, toF32 } from "./dtype.ts";

Deno.test("dtype: f16 bits, hand-checked (1.0 = 0x3c00, -2 = 0xc000, max 65504 = 0x7bff)", () => {
  assert.deepEqual([...f32ToF16(new Float32Array([1, -2, 65504, 0.5]))], [
    0x3c00,
    0xc000,
    0x7bff,
    0x3800,
  ]);
  assert.deepEqual([...f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x0001]))], [1, -2, 2 ** -24]);
});

Deno.test("dtype: bf16 rounds to nearest even and keeps NaN a NaN", () => {
  // 1 + 2^-8 is halfway between 1 (0x3f80) and 1 + 2^-7 (0x3f81): ties go to even 0x3f80
  // 1 + 3·2^-8 is halfway between 0x3f81 and 0x3f82: ties go to even 0x3f82
  const bits = f32ToBf16(
    new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -12, NaN]),
  );
  assert.deepEqual([...bits.subarray(0, 4)], [0x3f80, 0x3f80, 0x3f82, 0x3f81]);
  assert.ok(Number.isNaN(bf16ToF32(bits.subarray(4))[0]));
  assert.deepEqual([...bf16ToF32(new Uint16Array([0x4040, 0xbf80]))], [3, -1]);
});

Deno.test("dtype: toF32 copies unaligned bytes from a pooled Node Buffer correctly", () => {
  // NATS delivers payloads as views into a shared Buffer pool; slice() there is a view
  const pool = Buffer.alloc(64, 0xff);
  const le = new Uint8Array(new Float32Array([1.5, -2]).buffer);
  pool.set(le, 3);
  const view = pool.subarray(3, 11);
  assert.deepEqual([...toF32(view, "f32")], [1.5, -2]);
  const half = new Uint8Array(fromF32(new Float32Array([0.25, 3]), "f16"));
  pool.set(half, 9);
  assert.deepEqual([...toF32(pool.subarray(9, 13), "f16")], [0.25, 3]);
  pool.set(new Uint8Array([0x80, 0x3f, 0x40, 0xc0]), 21); // bf16 1, -3
  assert.deepEqual([...toF32(pool.subarray(21, 25), "bf16")], [1, -3]);
});

Deno.test("dtype: toF32 of aligned f32 bytes is a view, not a copy", () => {
  const bytes = new Uint8Array(new Float32Array([7, 8]).buffer);
  const v = toF32(bytes, "f32");
  bytes.set(new Uint8Array(new Float32Array([9]).buffer), 0);
  assert.equal(v[0], 9);
});

Deno.test("toF32 into given room: every dtype written there, a wrong size refused", () => {
  const cases = [
    ["f32", new Uint8Array(new Float32Array([1.5, -4]).buffer)],
    ["f16", new Uint8Array([0x00, 0x3e, 0x00, 0xc4])], // 1.5, -4
    ["bf16", new Uint8Array([0xc0, 0x3f, 0x80, 0xc0])], // 1.5, -4
  ] as const;
  for (const [dtype, bytes] of cases) {
    const room = new Float32Array(4).subarray(1, 3);
    const out = toF32(bytes, dtype, room);
    assert.equal(out, room, dtype);
    assert.deepEqual([...room], [1.5, -4], dtype);
  }
  assert.throws(() => toF32(cases[0][1], "f32", new Float32Array(3)), /room for 2 values, found 3/);
});
