import assert from "node:assert/strict";
import {
  ConditionSchema,
  FamilySchema,
  PoolSchema,
  SignalTestSchema,
} from "./policy_file_conditions.ts";

Deno.test("policy conditions: each pooling parses, windows are whole tokens", () => {
  for (
    const ok of ["token", { max: 8 }, { mean: 4 }, { rolling_mean_max: 16 }, {
      ema: { half_life: 2.5 },
    }, { count: { window: 32, above: 0.5 } }]
  ) {
    assert.deepEqual(PoolSchema.parse(ok), ok);
  }
  for (
    const bad of ["max", { max: 0 }, { mean: 1.5 }, { ema: { half_life: 0 } }, {
      count: { window: 4 },
    }, { max: 4, mean: 4 }]
  ) {
    assert.ok(!PoolSchema.safeParse(bad).success, JSON.stringify(bad));
  }
});

Deno.test("policy conditions: a family names its members or a cosine, not both or neither", () => {
  assert.deepEqual(FamilySchema.parse({ of: 12, members: [12, 40] }), {
    of: 12,
    members: [12, 40],
  });
  assert.deepEqual(FamilySchema.parse({ of: 12, min_cosine: 0.6, combine: "max" }), {
    of: 12,
    min_cosine: 0.6,
    combine: "max",
  });
  const neither = FamilySchema.safeParse({ of: 12 });
  assert.match(
    neither.error!.issues[0].message,
    /expected 'members: \[\.\.\.\]' or 'min_cosine: X'/,
  );
  const both = FamilySchema.safeParse({ of: 12, members: [1], min_cosine: 0.5 });
  assert.deepEqual(both.error!.issues.map((i) => [i.path, i.message]), [[
    ["min_cosine"],
    "expected 'members' or 'min_cosine', found both",
  ]]);
  for (const c of [0, 1.01]) assert.ok(!FamilySchema.safeParse({ of: 1, min_cosine: c }).success);
});

Deno.test("policy conditions: a signal test and a tree of them", () => {
  const test = { sae: "res12", latent: 4821, pool: { max: 8 }, above: 3.5, name: "exfil" };
  assert.deepEqual(SignalTestSchema.parse(test), test);
  assert.ok(!SignalTestSchema.safeParse({ ...test, name: "a.b" }).success, "no dots in a name");
  assert.ok(!SignalTestSchema.safeParse({ ...test, threshold: 1 }).success, "unknown key");
  const tree = {
    all: [test, {
      any: [{ probe: "tox", above: 0.9 }, { not: { sae: "res12", latent: 7, above: 1 } }],
    }],
  };
  assert.deepEqual(ConditionSchema.parse(tree), tree);
});
