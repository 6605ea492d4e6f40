/** The alternation of a load row's windows with its floor's, and their tallies. */
import assert from "node:assert/strict";
import { alternation, overFloor, SideTally } from "./e2e_windows.ts";

const text = (seconds: number, window: number) =>
  alternation(seconds, window).map((b) => `${b.side[0]}${b.seconds}`).join(" ");

Deno.test("alternation: sidecar, floor, floor, sidecar, … with a side's adjacent windows joined", () => {
  assert.equal(text(5, 1), "s1 f2 s2 f2 s2 f1");
  assert.equal(text(4, 1), "s1 f2 s2 f2 s1");
  assert.equal(text(2, 1), "s1 f2 s1");
  assert.equal(text(1, 1), "s1 f1");
  // a row shorter than a window still measures both sides
  assert.equal(text(0.5, 1), "s0.5 f0.5");
});

Deno.test("alternation: each side gets the row's seconds, whatever the window", () => {
  for (const [secs, win] of [[5, 1], [5, 2], [120, 1], [7, 3], [10, 0.5]]) {
    const blocks = alternation(secs, win);
    for (const side of ["sidecar", "floor"]) {
      const sum = blocks.filter((b) => b.side === side).reduce((a, b) => a + b.seconds, 0);
      assert.ok(Math.abs(sum - secs) < 1e-9, `${side} ${sum} of ${secs} (window ${win})`);
    }
    // blocks alternate: no two of one side in a row
    for (let i = 1; i < blocks.length; i++) assert.notEqual(blocks[i].side, blocks[i - 1].side);
  }
});

Deno.test("alternation: refuses a row or window that is not positive", () => {
  assert.throws(() => alternation(0, 1), RangeError);
  assert.throws(() => alternation(5, 0), RangeError);
  assert.throws(() => alternation(Number.NaN, 1), RangeError);
});

/** A window's own p99, as the generator reports it: index ⌊0.99 n⌋ of its sorted lags. */
const p99 = (lags: number[]) => [...lags].sort((a, b) => a - b)[Math.floor(0.99 * lags.length)];

Deno.test("SideTally: sums tokens, seconds, misses and drops; the lag's p99 over every frame", () => {
  const mark = (at: number) => ({ at, selfUs: 0, broker: null, generator: null });
  const t = new SideTally();
  assert.equal(t.lagP99Ms, 0);
  const lags = (n: number, v: number): number[] => new Array(n).fill(v);
  const win = (at: number, tokens: number, missing: number, dropped: number, lagsMs: number[]) => ({
    span: { from: mark(at), to: mark(at + 1) },
    tokens,
    seconds: tokens / 100,
    missing,
    dropped,
    lagP99Ms: p99(lagsMs),
    lagsMs,
  });
  // a short window with one late frame (its own p99 5) and a long punctual one: over all 200
  // frames the p99 (index 198) is punctual, where the worst window's p99 would say 5
  t.add(win(0, 100, 0, 0, [5]));
  t.add(win(5, 300, 16, 32, lags(199, 0.2)));
  assert.equal(t.tokens, 400);
  assert.equal(t.seconds, 4);
  assert.equal(t.missing, 16);
  assert.equal(t.dropped, 32);
  assert.equal(t.lagP99Ms, 0.2);
  // three late frames of 202: index 199 of the sorted lags is now the earliest of them
  t.add(win(9, 50, 0, 0, [3, 3]));
  assert.equal(t.lagP99Ms, 3);
  assert.deepEqual(t.spans.map((s) => s.from.at), [0, 5, 9]);
});

Deno.test("SideTally: windows without their frames' lags give the worst window's p99", () => {
  const mark = { at: 0, selfUs: 0, broker: null, generator: null };
  const w = (lagP99Ms: number) => ({
    span: { from: mark, to: mark },
    tokens: 16,
    seconds: 1,
    missing: 0,
    dropped: 0,
    lagP99Ms,
  });
  const one = new SideTally();
  one.add(w(1.25));
  assert.equal(one.lagP99Ms, 1.25);
  one.add(w(0.5));
  assert.equal(one.lagP99Ms, 1.25);
});

Deno.test("overFloor: the row's p99 less the floor's, to the µs; null without both", () => {
  assert.equal(overFloor(2.0207, 1.5), 0.521);
  assert.equal(overFloor(1.5, 4.25), -2.75);
  assert.equal(overFloor(null, 1), null);
  assert.equal(overFloor(1, null), null);
});
