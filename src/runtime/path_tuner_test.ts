import assert from "node:assert/strict";
import { PathTuner, PICKS_BEFORE_STEADY, SECOND_LOOK_AFTER, sizeClassOf } from "./path_tuner.ts";

/** A retry or a look with the defaults: 2 untimed batches, then 3 timed. */
const LOOK = 5;

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
  // the 10th batch of a class and the 16th start a retry of the slower path: `warmup` (1)
  // untimed and `samples` (2) timed batches in a row; int8 is 3× slower, so the next periodic
  // retry comes 10 × 3 batches after the first (the 40th), not at the 20th and 30th
  const after: string[] = [];
  for (let i = 0; i < 33; i++) after.push(run(128, big));
  assert.deepEqual(after.slice(0, 4), ["int8", "int8", "int8", "f32"]);
  assert.equal(after.slice(0, 30).filter((p) => p === "int8").length, 6);
  assert.deepEqual(after.slice(30, 33), ["int8", "int8", "int8"]);
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
  for (let i = 0; i < 63; i++) {
    const p = tuner.pick(1);
    picks.push(p);
    // int8 is slow for its first 5 batches (still compiling), then 1 ms; f32 is 2 ms throughout
    const ms = p === "int8" ? (calls.int8 < 5 ? 10 : 1) : 2;
    calls[p]++;
    tuner.record(1, p, ms);
  }
  assert.deepEqual(picks.slice(0, 15), [...Array(5).fill("int8"), ...Array(10).fill("f32")]);
  assert.deepEqual(picks.slice(15, 20), Array(LOOK).fill("int8"), "the early retry: 5 in a row");
  // int8 from then on, but for the second look at f32 SECOND_LOOK_AFTER batches after the switch
  assert.deepEqual(new Set(picks.slice(20, 20 + SECOND_LOOK_AFTER)), new Set(["int8"]));
  const look = 20 + SECOND_LOOK_AFTER;
  assert.deepEqual(picks.slice(look, look + LOOK), Array(LOOK).fill("f32"), "the second look");
  assert.deepEqual(new Set(picks.slice(look + LOOK, 63)), new Set(["int8"]), "int8 after it");
});

Deno.test("PathTuner: a path slow for its first batches after the other does not stay out for good", () => {
  const tuner = new PathTuner();
  let sinceF32 = Infinity;
  const picks: string[] = [];
  for (let i = 0; i < 600; i++) {
    const p = tuner.pick(16);
    picks.push(p);
    // as measured (768→24576 TopK, 16 tokens): int8 is slow while compiling (its first 5
    // batches) and for its first 3 batches after any f32 one; warm, it is twice as fast as f32
    sinceF32 = p === "f32" ? 0 : sinceF32 + 1;
    const int8Calls = picks.filter((x) => x === "int8").length;
    const ms = p === "f32" ? 2 : int8Calls <= 5 || sinceF32 <= 3 ? 5 : 1;
    tuner.record(16, p, ms * 16);
  }
  // timing a retry's first 3 batches only, every look at int8 came right after f32: f32 ran on
  assert.deepEqual(picks.slice(15, 20), Array(LOOK).fill("int8"), "the early retry");
  // int8 from that retry on; f32 only in looks and retries of 5 in a row (at 36, 63, 127 and
  // 255; f32 is twice as slow, so the next periodic retry is 512 batches on, past the 600th)
  const f32Runs = picks.slice(20).join(",").split("int8").map((r) => r.replaceAll(",", ""))
    .filter((r) => r !== "");
  assert.ok(f32Runs.every((r) => r === "f32".repeat(LOOK)), picks.join(","));
  assert.equal(f32Runs.length, 4, picks.join(","));
});

Deno.test("PathTuner: a much slower path's looks cost the same share of the time as a close one's", () => {
  // as measured at 128 tokens (768→24576 JumpReLU): f32 47 ms a batch, int8 10.4
  const share = (f32Ms: number) => {
    const tuner = new PathTuner();
    let f32 = 0, all = 0;
    for (const p of drive(tuner, 20_000, 128, (path) => path === "f32" ? f32Ms : 10.4)) {
      const ms = p === "f32" ? f32Ms : 10.4;
      all += ms;
      if (p === "f32") f32 += ms;
    }
    return f32 / all;
  };
  // a look (5 batches) every 256: 2% of the time at equal speeds; every 256 × 4.5 at 4.5× (the
  // tuner before this looked every 256 whatever the gap: 8.5% of the time on f32)
  const close = share(11.4), far = share(47);
  assert.ok(close > 0.015 && close < 0.025, `close ${close}`);
  assert.ok(far > 0.015 && far < 0.025, `far ${far}`);
  // and a path 20× slower is still looked at, every 256 × 8 batches
  const tuner = new PathTuner();
  const picks = drive(tuner, 10_000, 128, (path) => path === "f32" ? 208 : 10.4);
  const looks = picks.join(",").split("int8").filter((r) => r.includes("f32")).length;
  assert.ok(looks >= 6 && looks <= 9, `looks ${looks}`);
});

/** Drive a tuner over `n` batches of `tokens`; `ms(path, i)` is batch i's time on `path`. */
function drive(
  tuner: PathTuner,
  n: number,
  tokens: number,
  ms: (path: "int8" | "f32", i: number) => number,
  from = 0,
): string[] {
  const picks: string[] = [];
  for (let i = from; i < from + n; i++) {
    const p = tuner.pick(tokens);
    picks.push(p);
    tuner.record(tokens, p, ms(p, i));
  }
  return picks;
}

Deno.test("PathTuner: a few batches slowed by other work do not switch the running path", () => {
  const tuner = new PathTuner({ retryEvery: 1000 });
  // int8 1 ms, f32 2 ms; batches 100–109 of int8 take 5 ms (other work on the machine)
  const picks = drive(tuner, 200, 16, (p, i) => p === "f32" ? 2 : i >= 100 && i < 110 ? 5 : 1);
  assert.deepEqual(new Set(picks.slice(100, 110)), new Set(["int8"]), "the burst hit int8");
  const slowerAfter = picks.slice(63 + LOOK).filter((p) => p === "f32").length;
  // with only the last 3 times kept, the burst made f32 run until the next retry
  assert.equal(slowerAfter, 0, picks.slice(63 + LOOK).join(","));
});

Deno.test("PathTuner: a switch that a long stretch of other work caused is undone at the second look", () => {
  const tuner = new PathTuner({ retryEvery: 1000 });
  // int8 1 ms, f32 2 ms; int8's batches 100–139 take 5 ms (longer than the 16 times kept)
  const picks = drive(tuner, 240, 16, (p, i) => p === "f32" ? 2 : i >= 100 && i < 140 ? 5 : 1);
  const switched = picks.indexOf("f32", 100);
  assert.ok(switched > 100 && switched < 140, `expected a switch during the stretch: ${picks}`);
  // the first look (16 batches after the switch) falls inside the stretch; the next one comes
  // 32 batches later: back on int8 (a run longer than a look's 5) within about twice the stretch
  assertBackOnInt8(picks, 140, 140 + 45);
});

/** After `from`: int8 again for good by `by`, f32 only in looks of LOOK batches after that. */
function assertBackOnInt8(picks: string[], from: number, by: number): void {
  const back = picks.findIndex((_, i) =>
    i >= from && picks.slice(i, i + 8).every((q) => q === "int8")
  );
  assert.ok(back >= from && back <= by, `back at ${back}: ${picks.slice(from).join(",")}`);
  const runs = picks.slice(back).join(",").split("int8").map((r) => r.replaceAll(",", ""))
    .filter((r) => r !== "");
  assert.ok(runs.every((r) => r === "f32".repeat(LOOK)), picks.slice(back).join(","));
  assert.ok(runs.length <= 4, picks.slice(back).join(","));
}

Deno.test("PathTuner: with encodes in flight together (picks ahead of records) the looks still come", () => {
  const tuner = new PathTuner({ retryEvery: 1000 });
  const picks: string[] = [];
  // three batches picked, then the three recorded; int8's batches 100–139 take 5 ms
  for (let i = 0; i < 240; i += 3) {
    const group = [tuner.pick(16), tuner.pick(16), tuner.pick(16)];
    group.forEach((p, j) => {
      picks.push(p);
      tuner.record(16, p, p === "f32" ? 2 * 16 : (i + j >= 100 && i + j < 140 ? 5 : 1) * 16);
    });
  }
  assert.ok(picks.slice(100, 140).includes("f32"), "switched during the stretch");
  // counting recorded batches, a look due at 3m + 16 never came: f32 ran on to batch 1000
  assertBackOnInt8(picks, 140, 140 + 50);
});

Deno.test("PathTuner: a switch on a batch that retries the other path anyway keeps its look 16 batches on", () => {
  const tuner = new PathTuner();
  // int8 1 ms, f32 2 ms; from batch 47 on int8 takes 5 ms: its 16 kept times are all slow at
  // batch 63, the early retry's batch, which switches to f32 and re-times int8 at once
  const picks = drive(tuner, 120, 16, (p, i) => p === "f32" ? 2 : i >= 47 ? 5 : 1);
  assert.deepEqual(picks.slice(47, 63), Array(16).fill("int8"));
  assert.deepEqual(picks.slice(63, 63 + LOOK), Array(LOOK).fill("int8"), "the retry at the switch");
  assert.deepEqual(new Set(picks.slice(63 + LOOK, 63 + SECOND_LOOK_AFTER)), new Set(["f32"]));
  const look = 63 + SECOND_LOOK_AFTER;
  assert.deepEqual(picks.slice(look, look + LOOK), Array(LOOK).fill("int8"), picks.join(","));
});

Deno.test("PathTuner: after a switch the next periodic look is no later than the plain interval", () => {
  // f32 8× slower stretches the periodic looks to 8 × 256; then int8 turns slow (10×) at batch 1000
  const tuner = new PathTuner();
  const picks = drive(tuner, 2000, 128, (path, i) => path === "f32" ? 80 : i < 1000 ? 10 : 100);
  const f32After = picks.slice(1000).filter((p) => p === "f32").length;
  assert.ok(f32After > 900, `f32 ran ${f32After} of the last 1,000`);
  // int8, now the slower path, is looked at again within 256 batches of the last second look
  const int8Looks = picks.slice(1300, 1600).filter((p) => p === "int8").length;
  assert.ok(int8Looks >= 5, `int8 picks in batches 1300-1600: ${int8Looks}`);
});

Deno.test("PathTuner: zero times on both paths keep the periodic looks coming", () => {
  const tuner = new PathTuner();
  const picks = drive(tuner, 3000, 128, () => 0);
  const f32 = picks.slice(100).filter((p) => p === "f32").length;
  assert.ok(f32 >= 40, `f32 picks after the first 100: ${f32}`);
});

Deno.test("PathTuner: PICKS_BEFORE_STEADY is the first pick after the default tuner's early looks", () => {
  const tuner = new PathTuner();
  const picks: string[] = [];
  for (let i = 0; i < 255; i++) {
    const p = tuner.pick(128);
    picks.push(p);
    tuner.record(128, p, p === "int8" ? 10 : 47); // f32 4.7× slower, as at 128 tokens
  }
  const f32At = picks.flatMap((p, i) => p === "f32" ? [i] : []);
  // the first look (after int8's five), then the early retries at the 16th and 64th picks
  assert.deepEqual(f32At, [5, 6, 7, 8, 9, 15, 16, 17, 18, 19, 63, 64, 65, 66, 67]);
  assert.equal(PICKS_BEFORE_STEADY, f32At[f32At.length - 1] + 1);
  // from there to the first periodic retry (the 256th pick), only the faster path runs
  assert.ok(picks.slice(PICKS_BEFORE_STEADY).every((p) => p === "int8"));
});

Deno.test("PathTuner: sizeClassOf is ⌊log₂ tokens⌋, with no tokens in the first class", () => {
  const cases: [number, number][] = [[0, 0], [1, 0], [2, 1], [3, 1], [16, 4], [127, 6], [128, 7], [
    255,
    7,
  ], [256, 8]];
  for (const [tokens, cls] of cases) assert.equal(sizeClassOf(tokens), cls, `${tokens} tokens`);
});
