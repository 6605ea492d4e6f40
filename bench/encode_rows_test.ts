/** The encode rows' turns: when a row is settled, and when another turn is due. */
import assert from "node:assert/strict";
import {
  anotherTurn,
  bestTurn,
  confirmedBest,
  ENCODE_ROUNDS,
  MAX_ENCODE_ROUNDS,
  settled,
  SETTLED_SPREAD,
  timeEncoder,
} from "./encode_rows.ts";
import type { BenchResult } from "./run.ts";
import type { Encoder } from "../src/core/sae.ts";
import { PathTuner } from "../src/runtime/path_tuner.ts";

const turn = (tokensPerS: number): BenchResult => ({
  name: "encode/x/b1",
  tokens_per_s: tokensPerS,
  baseline_tokens_per_s: null,
  ratio: null,
  p50_ms: 1,
  p99_ms: 2,
  rss_mb: 100,
  path: "f32",
  fallbacks: 1,
});

/** A row folded from turns the way bench/run.ts folds them. */
function fold(ours: number[], theirs: (number | null)[]): BenchResult {
  let row: BenchResult | undefined;
  ours.forEach((v, i) => row = bestTurn(row, turn(v), theirs[i] ?? null, i + 1));
  return row!;
}

Deno.test("encode rows: a side is settled when its two best turns are within 10%, whatever their order", () => {
  assert.equal(SETTLED_SPREAD, 0.1);
  assert.equal(settled(fold([700, 1000, 905], [500, 300, 455])), true);
  assert.equal(settled(fold([1000, 899, 700], [500, 500, 500])), false); // ours: 899 < 900
  assert.equal(settled(fold([1000, 950, 700], [300, 1000, 850])), false); // NumPy: 850 < 900
  // the exact edge: 900 is 10% below 1000
  assert.equal(settled(fold([900, 1000], [null, null])), true);
});

Deno.test("encode rows: one turn is never settled; a missing baseline does not hold a row back", () => {
  assert.equal(settled(fold([1000], [1000])), false);
  assert.equal(settled(fold([1000, 990], [null, null])), true); // NumPy absent
  assert.equal(settled(fold([1000, 990], [500, null])), false); // NumPy measured once
  assert.equal(settled({ turns_tokens_per_s: [] }), false);
});

Deno.test("encode rows: at least ENCODE_ROUNDS turns, more while a row is unsettled, never past MAX_ENCODE_ROUNDS", () => {
  const calm = [fold([1000, 990, 980], [500, 495, 490])];
  const noisy = [calm[0], fold([1176, 498, 325], [456, 333, 435])];
  assert.equal(anotherTurn(ENCODE_ROUNDS - 1, calm), true);
  assert.equal(anotherTurn(ENCODE_ROUNDS, calm), false);
  assert.equal(anotherTurn(ENCODE_ROUNDS, noisy), true);
  assert.equal(anotherTurn(MAX_ENCODE_ROUNDS - 1, noisy), true);
  assert.equal(anotherTurn(MAX_ENCODE_ROUNDS, noisy), false);
  // the loop bench/run.ts runs: turns taken while anotherTurn(turns taken so far)
  const turnsTaken = (rows: BenchResult[]) => {
    let round = 1;
    for (; anotherTurn(round - 1, rows); round++);
    return round - 1;
  };
  assert.equal(turnsTaken(calm), ENCODE_ROUNDS);
  assert.equal(turnsTaken(noisy), MAX_ENCODE_ROUNDS);
  assert.equal(turnsTaken([]), ENCODE_ROUNDS);
});

Deno.test("encode rows: the kept row is each side's best turn, with every turn and all fallbacks", () => {
  const row = fold([800, 1000, 900], [400, null, 450]);
  assert.equal(row.tokens_per_s, 1000);
  assert.equal(row.baseline_tokens_per_s, 450);
  assert.deepEqual(row.turns_tokens_per_s, [800, 1000, 900]);
  assert.deepEqual(row.baseline_turns_tokens_per_s, [400, null, 450]);
  assert.equal(row.fallbacks, 3);
  assert.equal(row.turns, 3);
});

Deno.test("encode rows: a lone fastest turn that no other confirms does not stand for a side that never settled", () => {
  // pair 4's --quick jumprelu-768x24576-bf16/b128 (the full run's best: 10,150 tokens/s)
  const ours = [8180, 9113, 13184, 11278, 9036, 10714];
  const theirs = [4000, 4100, 3000, 5200, 4050, null];
  const row = fold(ours, theirs);
  assert.equal(row.tokens_per_s, 11278);
  assert.equal(row.baseline_tokens_per_s, 4100, "NumPy's lone 5,200 is not confirmed either");
  assert.deepEqual(row.turns_tokens_per_s, ours);
  // the row's other figures are that turn's
  const turns = ours.map((v, i) => ({ ...turn(v), p50_ms: i, path: `path ${i}` }));
  let kept: BenchResult | undefined;
  turns.forEach((t, i) => kept = bestTurn(kept, t, null, i + 1));
  assert.equal(kept!.p50_ms, 3);
  assert.equal(kept!.path, "path 3");
  assert.equal(kept!.baseline_tokens_per_s, null);
  // a baseline turn that measured nothing does not confirm another
  assert.equal(fold([1000, 990, 980], [5000, 0, 0]).baseline_tokens_per_s, 5000);
});

Deno.test("encode rows: confirmedBest is the fastest confirmed turn, else the fastest", () => {
  assert.equal(confirmedBest([1000, 950, 700]), 0, "settled: the fastest");
  assert.equal(confirmedBest([1300, 1000, 950]), 1);
  assert.equal(confirmedBest([500, 1000]), 1, "none confirmed: the fastest");
  assert.equal(confirmedBest([1000]), 0);
  assert.equal(confirmedBest([]), -1);
  // within SETTLED_SPREAD exactly still confirms
  assert.equal(confirmedBest([1000, 1000 * (1 - SETTLED_SPREAD)]), 0);
});

/**
 * Test double of a path-tuning encoder (the int8 candidates need a weight file and native
 * kernels; what is tested here is the bench's warm-up): the real PathTuner picks, and each
 * path takes its own time, int8 8 ms and f32 30 ms a batch as at 128 tokens.
 */
function tuningEncoder(): Encoder & { path: string } {
  const tuner = new PathTuner();
  let last = "int8";
  return {
    dIn: 1,
    dSae: 1,
    get path() {
      return last === "int8" ? "int8-candidates" : "f32";
    },
    async encode(_x: Float32Array, tokens: number) {
      const p = tuner.pick(tokens);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, p === "int8" ? 8 : 30));
      tuner.record(tokens, p, performance.now() - t0);
      last = p;
      return [];
    },
    close: () => Promise.resolve(),
  };
}

Deno.test("encode rows: a tuning encoder's turns start after its tuner's early looks, its first turn too", async () => {
  const enc = tuningEncoder();
  for (const turn of [1, 2]) {
    const row = await timeEncoder("encode/x/b128", enc, new Float32Array(128), 128);
    // without the longer warm-up the first turn times the look at the 16th batch (5 of f32)
    assert.deepEqual(Object.keys(row.path_calls ?? {}), ["int8-candidates"], `turn ${turn}`);
  }
});
