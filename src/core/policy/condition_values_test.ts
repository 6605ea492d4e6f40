import assert from "node:assert/strict";
import { compilePolicySet } from "./compile.ts";
import type { CompiledTest } from "./compiled.ts";
import {
  conditionHoldsAt,
  conditionLabel,
  conditionLeaves,
  pooledValues,
  ruleConditionValues,
  testHolds,
} from "./condition_values.ts";
import { PolicyEngine } from "./engine.ts";
import type { SparseLatents } from "../sae.ts";
import { all, everyTime, file, latent, not, probe, SIGNALS, sparse, test } from "./test_helpers.ts";

const latentTest = (pool: CompiledTest["pool"]): CompiledTest => ({
  encoder: "res",
  kind: "latent",
  index: 1,
  pool,
  trigger: true,
});

Deno.test("pooledValues: per-token, max, mean and count pooling by hand", () => {
  const raw = [0, 4, 0, 2, 0, 0];
  // per token: the value itself, 0 where inactive
  assert.deepEqual(pooledValues(latentTest({ kind: "token" }), raw), [0, 4, 0, 2, 0, 0]);
  // max over the last 2 tokens: t1 4, t2 max(4,0), t3 max(0,2), t4 max(2,0), t5 0
  assert.deepEqual(pooledValues(latentTest({ kind: "max", window: 2 }), raw), [0, 4, 4, 2, 2, 0]);
  // mean over the last 3 tokens (the window holds min(3, t+1) tokens from the first)
  assert.deepEqual(
    pooledValues(latentTest({ kind: "mean", window: 3 }), raw),
    [0, 4 / 2, 4 / 3, 6 / 3, 2 / 3, 2 / 3],
  );
  // tokens above 1 among the last 2
  assert.deepEqual(
    pooledValues(latentTest({ kind: "count", window: 2, above: 1 }), raw),
    [0, 1, 1, 1, 1, 0],
  );
});

Deno.test("pooledValues: a probe is present on every token, negative scores included", () => {
  const t: CompiledTest = { ...latentTest({ kind: "mean", window: 2 }), kind: "probe" };
  // a latent would skip the 0 at t1; a probe's 0 counts: (−2+0)/2, (0+4)/2
  assert.deepEqual(pooledValues(t, [-2, 0, 4]), [-2 / 1, -1, 2]);
});

Deno.test("testHolds: strict comparisons as the engine makes them", () => {
  assert.equal(testHolds("above", 2, 2), false);
  assert.equal(testHolds("above", 2, 2.01), true);
  assert.equal(testHolds("below", 0, -0.5), true);
  assert.equal(testHolds("below", 0, 0), false);
});

// spike: all(max of latent 1 over 3 tokens above 2, not latent 3 above 1)
const SPIKE = compilePolicySet([
  file([
    everyTime(
      "spike",
      all(
        test(latent(1), 2, { pool: { kind: "max", window: 3 }, line: 7 }),
        not(test(latent(3), 1, { line: 8 })),
      ),
    ),
    everyTime("score", test(probe(1), 0.5, { op: "below", line: 12 })),
  ]),
], SIGNALS);
const L1 = [0, 3, 1, 0, 1, 0];
const L3 = [0, 0, 2, 0, 0, 0];

Deno.test("ruleConditionValues: each leaf pooled, held per token, by hand", () => {
  const rule = SPIKE.rules[0];
  const values = ruleConditionValues(rule, (t) => t.index === 1 ? L1 : L3);
  assert.equal(values.length, 2);
  assert.deepEqual(values.map((v) => v.label), [
    // default names: <sae>.<latent> without a label, the label slugged with one
    "res.1 (p.yaml:7 res latent 1)",
    `prompt_injection (p.yaml:8 res latent 3 "Prompt injection")`, // the SAE labels latent 3
  ]);
  // max over t-2..t of [0, 3, 1, 0, 1, 0]: t4 max(1, 0, 1), t5 max(0, 1, 0)
  assert.deepEqual(values[0].pooled, [0, 3, 3, 3, 1, 1]);
  assert.deepEqual(values[0].held, [false, true, true, true, false, false]);
  assert.deepEqual(values[1].pooled, L3);
  assert.deepEqual(values[1].held, [false, false, true, false, false, false]);
  // all(#1, not #2)
  assert.deepEqual(
    L1.map((_, pos) => conditionHoldsAt(rule.condition, values, pos)),
    [false, true, false, true, false, false],
  );
});

Deno.test("conditionHoldsAt agrees with the engine on every token it evaluates", () => {
  const rule = SPIKE.rules[0];
  const rows: SparseLatents[] = L1.map((v, i) =>
    sparse([...(v ? [[1, v]] : []), ...(L3[i] ? [[3, L3[i]]] : [])] as [number, number][])
  );
  const engine = new PolicyEngine(SPIKE, { now: () => 0 });
  const fired = engine.evaluate({
    ctx: { requestId: "r", model: "m" },
    position: 0,
    tokens: rows.length,
    latents: new Map([["res", rows], [
      "pr",
      rows.map(() => sparse([[0, 0], [1, 1]])),
    ]]),
    firstRow: 0,
  }).find((f) => f.rule.id === "spike");
  // the engine evaluates where the trigger (latent 1) is active: 1, 2 and 4
  assert.deepEqual(fired?.positions, [1]);
  const values = ruleConditionValues(rule, (t) => t.index === 1 ? L1 : L3);
  for (const pos of [1, 2, 4]) {
    assert.equal(conditionHoldsAt(rule.condition, values, pos), fired.positions.includes(pos));
  }
});

Deno.test("conditionLeaves and conditionLabel: depth first, file:line[:col] and the signal", () => {
  const leaves = conditionLeaves(SPIKE.rules[0].condition);
  assert.deepEqual(leaves.map((l) => l.op), ["above", "above"]);
  const score = SPIKE.rules[1];
  const [leaf] = conditionLeaves(score.condition);
  assert.equal(conditionLabel(leaf, score.tests[leaf.test]), "p.yaml:12 pr score 1");
  assert.equal(
    conditionLabel({ ...leaf, source: { file: "a.yaml", line: 3, col: 9 } }, score.tests[0]),
    "a.yaml:3:9 pr score 1",
  );
});
