import assert from "node:assert/strict";
import type { Pool } from "./ast.ts";
import { createPoolState } from "./pool.ts";

const VALUES = [0, 4, 0, 0, 8];

/** Pooled values at every position, pushing only nonzero values (as the engine does for SAE latents). */
function lazy(pool: Pool, values: number[], start = 0): number[] {
  const s = createPoolState(pool);
  return values.map((v, i) => {
    if (v !== 0) s.push(start + i, v, start);
    return s.read(start + i, start);
  });
}

const CASES: [string, Pool, number[]][] = [
  ["token", { kind: "token" }, [0, 4, 0, 0, 8]],
  ["max window 2", { kind: "max", window: 2 }, [0, 4, 4, 0, 8]],
  // n = min(2, t+1): the first token's window holds one token
  ["mean window 2", { kind: "mean", window: 2 }, [0, 2, 2, 0, 4]],
  ["rolling_mean_max window 2", { kind: "rolling_mean_max", window: 2 }, [0, 2, 2, 2, 4]],
  // a = 1/2: 0, 2, 1, 0.5, 4 + 0.25
  ["ema half-life 1", { kind: "ema", halfLife: 1 }, [0, 2, 1, 0.5, 4.25]],
  ["count window 2 above 3", { kind: "count", window: 2, above: 3 }, [0, 1, 1, 0, 1]],
  ["count window 3 above 0", { kind: "count", window: 3, above: 0 }, [0, 1, 1, 1, 1]],
];

for (const [name, pool, want] of CASES) {
  Deno.test(`pool ${name}: 0,4,0,0,8 by hand`, () => {
    assert.deepEqual(lazy(pool, VALUES), want);
    // the same at an offset start (a request whose first token is at 100)
    assert.deepEqual(lazy(pool, VALUES, 100), want);
  });
}

Deno.test("pool: reads skipped over a gap give the per-token values", () => {
  const s = createPoolState({ kind: "mean", window: 3 });
  s.push(0, 6, 0);
  assert.equal(s.read(0, 0), 6);
  // positions 1, 2 are zeros: window 0..2 holds 6,0,0
  assert.equal(s.read(2, 0), 2);
  assert.equal(s.read(3, 0), 0);
  s.push(10, 3, 0);
  assert.equal(s.read(10, 0), 1);
});

Deno.test("pool ema: a long gap decays by (1-a)^gap", () => {
  const s = createPoolState({ kind: "ema", halfLife: 10 });
  s.push(0, 1, 0);
  const a = 1 - Math.pow(2, -1 / 10);
  const got = s.read(100, 0);
  assert.ok(Math.abs(got - a * Math.pow(2, -10)) < 1e-15, `${got}`);
});

Deno.test("pool: probe scores (negative) with a lost frame", () => {
  // window 2; values at 0,1 are -4, -2, positions 2..3 lost (read 0), 4 is -6
  const max = createPoolState({ kind: "max", window: 2 });
  const roll = createPoolState({ kind: "rolling_mean_max", window: 2 });
  const count = createPoolState({ kind: "count", window: 2, above: -1 });
  for (const s of [max, roll, count]) {
    s.push(0, -4, 0);
    s.push(1, -2, 0);
  }
  assert.equal(max.read(1, 0), -2);
  assert.equal(roll.read(1, 0), -3); // means: -4, -3
  assert.equal(count.read(1, 0), 0);
  for (const s of [max, roll, count]) s.push(4, -6, 0);
  assert.equal(max.read(4, 0), 0); // window 3..4 = 0, -6
  // means: -4, -3, then -1 (pos 2: -2,0), 0 (pos 3), -3 (pos 4): max 0
  assert.equal(roll.read(4, 0), 0);
  assert.equal(count.read(4, 0), 1); // the lost token at 3 reads 0 > -1
});

Deno.test("pool rolling_mean_max: a fresh state read after zeros is 0", () => {
  const s = createPoolState({ kind: "rolling_mean_max", window: 4 });
  assert.equal(s.read(5, 0), 0);
  s.push(6, 8, 0);
  assert.equal(s.read(6, 0), 2);
});

Deno.test("pool: windows larger than the entries grow their buffer", () => {
  const s = createPoolState({ kind: "max", window: 100 });
  for (let t = 0; t < 50; t++) s.push(t, t + 1, 0);
  assert.equal(s.read(60, 0), 50);
  // the window at 148 is 49..148 and still holds the 50 pushed at 49
  assert.equal(s.read(148, 0), 50);
  assert.equal(s.read(149, 0), 0);
});
