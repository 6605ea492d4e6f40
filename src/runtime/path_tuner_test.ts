import assert from "node:assert/strict";
import { PathTuner } from "./path_tuner.ts";

Deno.test("PathTuner: times both paths per size class (after a warm-up each), then runs the faster, retrying the other", () => {
  const tuner = new PathTuner({ samples: 2, retryEvery: 10, warmup: 1 });
  const run = (tokens: number, cost: { int8: number; f32: number }) => {
    const p = tuner.pick(tokens);
    tuner.record(tokens, p, cost[p] * tokens);
    return p;
  };
  const big = { int8: 3, f32: 1 }; // f32 faster at 128 tokens
  const small = { int8: 1, f32: 2 }; // int8 faster at 1 token
  // 128: int8 ×3 (warm-up + 2 timed), f32 ×3, then f32
  const seq = Array.from({ length: 8 }, () => run(128, big));
  assert.deepEqual(seq, ["int8", "int8", "int8", "f32", "f32", "f32", "f32", "f32"]);
  // a size class is ⌊log₂ tokens⌋: 200 tokens share 128's (7); 1 token is timed on its own
  assert.equal(run(200, big), "f32");
  const one = Array.from({ length: 7 }, () => run(1, small));
  assert.deepEqual(one.slice(6), ["int8"]);
  // every 10th batch of a class (batches 10, 20, 30) and the 16th start a retry of the slower
  // path, `samples` (2) batches in a row
  const after: string[] = [];
  for (let i = 0; i < 30; i++) after.push(run(128, big));
  assert.equal(after.filter((p) => p === "int8").length, 8);
  assert.deepEqual(after.slice(0, 3), ["int8", "int8", "f32"]);
});

Deno.test("PathTuner: the default two warm-up batches per path are not timed", () => {
  const tuner = new PathTuner({ samples: 1 });
  const picks: string[] = [];
  for (let i = 0; i < 7; i++) {
    const p = tuner.pick(16);
    picks.push(p);
    // the warm-up batches are slow on int8 and would make f32 look better if kept
    tuner.record(16, p, p === "int8" ? (i < 2 ? 100 : 1) : 2);
  }
  assert.deepEqual(picks, ["int8", "int8", "int8", "f32", "f32", "f32", "int8"]);
});

Deno.test("PathTuner: a path timed slow while it warmed up gets an early second look, and its best time counts", () => {
  const tuner = new PathTuner(); // 2 warm-up, 3 timed, retries at the 16th and 64th batch
  const calls = { int8: 0, f32: 0 };
  const picks: string[] = [];
  for (let i = 0; i < 40; i++) {
    const p = tuner.pick(1);
    picks.push(p);
    // int8 is slow for its first 5 batches (still compiling), then 1 ms; f32 is 2 ms throughout
    const ms = p === "int8" ? (calls.int8 < 5 ? 10 : 1) : 2;
    calls[p]++;
    tuner.record(1, p, ms);
  }
  assert.deepEqual(picks.slice(0, 15), [...Array(5).fill("int8"), ...Array(10).fill("f32")]);
  assert.deepEqual(picks.slice(15, 18), ["int8", "int8", "int8"], "the early retry: 3 in a row");
  assert.deepEqual(new Set(picks.slice(18)), new Set(["int8"]), "int8 from then on");
});

Deno.test("PathTuner: a retry's first batch meeting cold caches does not keep the faster path out", () => {
  const tuner = new PathTuner();
  let last = "";
  const picks: string[] = [];
  for (let i = 0; i < 80; i++) {
    const p = tuner.pick(1);
    picks.push(p);
    // int8 is slow while compiling (its first 5 batches) and on a batch right after f32 (cold
    // caches); warm, it is twice as fast as f32
    const int8Calls = picks.filter((x) => x === "int8").length;
    const ms = p === "f32" ? 2 : int8Calls <= 5 || last === "f32" ? 5 : 1;
    tuner.record(1, p, ms);
    last = p;
  }
  // int8 from the early retry at the 16th batch on; f32 only in its own retry (64th batch, 3 in a row)
  assert.deepEqual(new Set(picks.slice(15, 63)), new Set(["int8"]), picks.join(","));
  assert.equal(picks.slice(15).filter((p) => p === "f32").length, 3, picks.join(","));
});
