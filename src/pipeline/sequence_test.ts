import assert from "node:assert/strict";
import type { Frame } from "../core/frame/format.ts";
import { SequenceTracker, uncountedBefore } from "./sequence.ts";

const f = (requestId: string, seq: number, endOfRequest = false) =>
  ({ requestId, seq, tokens: 2, endOfRequest }) as Frame;

Deno.test("sequence: gaps are counted once, a repeated seq is not accepted, the end marker forgets", () => {
  const s = new SequenceTracker();
  assert.deepEqual(s.track(f("r", 0), 1), {
    accepted: true,
    expected: 0,
    lost: 0,
    resumed: false,
    first: true,
  });
  const gap = s.track(f("r", 3), 2);
  assert.equal(gap.lost, 2);
  assert.equal(gap.expected, 1);
  assert.equal(gap.first, false);
  const repeat = s.track(f("r", 2), 3);
  assert.equal(repeat.accepted, false);
  assert.equal(repeat.expected, 4);
  assert.equal(s.size, 1);
  s.track(f("r", 4, true), 4);
  assert.equal(s.size, 0, "the end marker ends the request");
  assert.equal(s.track(f("r", 0), 5).first, true);
});

Deno.test("sequence: capacity evicts the least recently seen; sweep forgets the idle", () => {
  const s = new SequenceTracker({ maxRequests: 2 });
  s.track(f("a", 0), 1);
  s.track(f("b", 0), 2);
  s.track(f("a", 1), 3); // a is now the most recent
  assert.equal(s.track(f("c", 0), 4).evicted, "b");
  assert.deepEqual(s.sweep(4), [{ requestId: "a", tokens: 4 }]);
  assert.equal(s.size, 1);
});

Deno.test("sequence: a request resumed from a checkpoint counts only what was not counted before", () => {
  const s = new SequenceTracker({
    resume: (id) => id === "r" ? { next: 5, counted: 8, lost: 3 } : undefined,
  });
  const step = s.track(f("r", 10), 0);
  assert.equal(step.resumed, true);
  assert.equal(step.expected, 5);
  assert.equal(step.lost, uncountedBefore({ next: 5, counted: 8, lost: 3 }, 10));
  assert.equal(step.lost, 2);
});
