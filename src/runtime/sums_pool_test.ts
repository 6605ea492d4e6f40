import assert from "node:assert/strict";
import { SumsPool } from "./sums_pool.ts";

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
