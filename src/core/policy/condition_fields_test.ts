import assert from "node:assert/strict";
import { conditionFields, conditionHolds, poolText } from "./condition_fields.ts";
import type { CompiledTest, RuleCondition } from "./compiled.ts";

Deno.test("poolText: each pooling in words", () => {
  assert.deepEqual(
    [
      poolText({ kind: "token" }),
      poolText({ kind: "max", window: 8 }),
      poolText({ kind: "mean", window: 4 }),
      poolText({ kind: "rolling_mean_max", window: 3 }),
      poolText({ kind: "ema", halfLife: 2.5 }),
      poolText({ kind: "count", window: 5, above: 0.5 }),
    ],
    ["token", "max 8", "mean 4", "rolling_mean_max 3", "ema half_life 2.5", "count 5 above 0.5"],
  );
});

Deno.test("conditionFields: cond.<name>.<field> for every condition", () => {
  const tests: CompiledTest[] = [
    {
      encoder: "res",
      kind: "latent",
      index: 3,
      label: "e-mail",
      pool: { kind: "max", window: 8 },
      trigger: true,
    },
    { encoder: "jb", kind: "probe", index: 0, pool: { kind: "token" }, trigger: true },
  ];
  const source = { file: "p.yaml", line: 1 };
  const conditions: RuleCondition[] = [
    { name: "email", test: 0, op: "above", threshold: 5, source },
    { name: "jb.0", test: 1, op: "below", threshold: 0.2, source },
  ];
  const fields: Record<string, string | number | undefined> = {};
  conditionFields({ tests, conditions }, [5.5, 0.3], fields);
  assert.deepEqual(fields, {
    "cond.email.value": 5.5,
    "cond.email.threshold": 5,
    "cond.email.op": "above",
    "cond.email.pool": "max 8",
    "cond.email.signal": "res:3",
    "cond.email.label": "e-mail",
    "cond.email.held": "true",
    "cond.jb.0.value": 0.3,
    "cond.jb.0.threshold": 0.2,
    "cond.jb.0.op": "below",
    "cond.jb.0.pool": "token",
    "cond.jb.0.signal": "jb:0",
    "cond.jb.0.label": undefined,
    "cond.jb.0.held": "false",
  });
  assert.equal(conditionHolds({ op: "above", threshold: 1 }, 1), false);
  assert.equal(conditionHolds({ op: "below", threshold: 1 }, 0.5), true);
});
