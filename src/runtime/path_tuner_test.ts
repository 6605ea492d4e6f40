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
  // every 10th batch of a class retries the slower path once
  let retried = 0;
  for (let i = 0; i < 30; i++) if (run(128, big) === "int8") retried++;
  assert.equal(retried, 3);
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
