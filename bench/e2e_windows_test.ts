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

Deno.test("SideTally: sums tokens, seconds and misses; keeps the worst lag and every span", () => {
  const mark = (at: number) => ({ at, selfUs: 0, broker: null, generator: null });
  const t = new SideTally();
  t.add({
    span: { from: mark(0), to: mark(1) },
    tokens: 100,
    seconds: 1,
    missing: 0,
    lagP99Ms: 0.5,
  });
  t.add({
    span: { from: mark(5), to: mark(7) },
    tokens: 300,
    seconds: 2,
    missing: 16,
    lagP99Ms: 2,
  });
  t.add({ span: { from: mark(9), to: mark(10) }, tokens: 50, seconds: 1, missing: 0, lagP99Ms: 1 });
  assert.equal(t.tokens, 450);
  assert.equal(t.seconds, 4);
  assert.equal(t.missing, 16);
  assert.equal(t.lagP99Ms, 2);
  assert.deepEqual(t.spans.map((s) => s.from.at), [0, 5, 9]);
});

Deno.test("overFloor: the row's p99 less the floor's, to the µs; null without both", () => {
  assert.equal(overFloor(2.0207, 1.5), 0.521);
  assert.equal(overFloor(1.5, 4.25), -2.75);
  assert.equal(overFloor(null, 1), null);
  assert.equal(overFloor(1, null), null);
});
