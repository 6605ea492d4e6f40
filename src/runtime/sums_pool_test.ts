import assert from "node:assert/strict";
import { isAligned } from "./aligned.ts";
import { SumsPool } from "./sums_pool.ts";
import { hugePageAdvice, hugePageBytes, transparentHugePageMode } from "./huge_pages.ts";

Deno.test("sums pool: views of the asked length, memory reused once given back, at most `keep` kept", () => {
  const pool = new SumsPool(2);
  const a = pool.take(100), b = pool.take(50);
  assert.equal(a.length, 100);
  assert.notEqual(a.buffer, b.buffer, "two taken at once never share memory");
  pool.give(a);
  pool.give(a); // twice: still one free buffer
  assert.equal(pool.free, 1);
  pool.give(b);
  // the smallest buffer that is large enough
  assert.equal(pool.take(40).buffer, b.buffer);
  assert.equal(pool.take(40).buffer, a.buffer);
  assert.equal(pool.free, 0);
  const c = pool.take(200);
  assert.ok(c.buffer !== a.buffer && c.buffer !== b.buffer, "none free: a new buffer");
  pool.give(a);
  pool.give(b);
  pool.give(c);
  assert.equal(pool.free, 2, "the largest two are kept");
  assert.equal(pool.take(150).buffer, c.buffer);
  assert.equal(pool.take(80).buffer, a.buffer);
});

Deno.test("SumsPool: a buffer starts on a cache line when taken, and again when taken back", () => {
  const pool = new SumsPool(2);
  const kept: unknown[] = [];
  for (let i = 0; i < 20; i++) {
    kept.push(new Uint8Array(48 + 16 * i)); // other allocations in between
    const sums = pool.take(1000 + 333 * i);
    assert.equal(isAligned(sums), true, `take ${i}`);
    pool.give(sums);
    const again = pool.take(900 + 333 * i);
    assert.equal(again.buffer, sums.buffer);
    assert.equal(isAligned(again), true, `taken back ${i}`);
    assert.equal(again.length, 900 + 333 * i);
    pool.give(again);
  }
});

Deno.test({
  name: "SumsPool: a buffer of several huge pages asks for them; a small one does not",
  ignore: [null, "never"].includes(transparentHugePageMode()) || hugePageBytes() > 2 ** 21,
  fn() {
    const pool = new SumsPool(2);
    const before = hugePageAdvice();
    pool.take(1000);
    assert.deepEqual(hugePageAdvice(), before, "4 KB: no advice");
    // 128 tokens × 24,576 latents: 12 MiB of sums
    const big = pool.take(128 * 24576);
    const after = hugePageAdvice();
    assert.equal(after.arrays, before.arrays + 1);
    assert.ok(after.bytes - before.bytes >= 5 * hugePageBytes(), `${after.bytes - before.bytes}`);
    assert.equal(big.length, 128 * 24576);
  },
});
