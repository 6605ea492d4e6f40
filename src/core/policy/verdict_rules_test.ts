import assert from "node:assert/strict";
import { compilePolicySet, type SignalInfo } from "./compile.ts";
import { all, everyTime, file, latent, probe, rule, test } from "./test_helpers.ts";
import {
  PART_REST,
  PART_VERDICT,
  rulePart,
  ruleParts,
  verdictEncoderIds,
  verdictLatents,
} from "./verdict_rules.ts";

const SIGNALS = new Map<string, SignalInfo>([
  ["res", {
    kind: "sae",
    dSae: 16,
    decoderCosines: () => new Array(16).fill(0).map((_, i) => i < 4 ? 0.9 : 0),
  }],
  ["other", { kind: "sae", dSae: 8 }],
  ["pr", { kind: "probe", dSae: 2 }],
]);
const STEER = { actions: [{ kind: "steer" as const, steer: { kind: "abort" as const } }] };

Deno.test("verdict rules: the rules that steer, the latents and encoders they read, family members included", () => {
  const set = compilePolicySet([
    file([
      rule("alerts-only", all(test(latent(9), 1), test(latent(2, "other"), 1))),
      rule("steers", all(test(latent(12), 1), test(probe(1), 0)), STEER),
      everyTime(
        "family",
        test({ kind: "family", sae: "res", of: 1, members: [1, 3], combine: "sum" }, 1),
        {
          actions: [{ kind: "alert" }, {
            kind: "steer",
            steer: { kind: "ablate", sae: "res", latent: 1 },
          }],
        },
      ),
      rule("alerts-too", test(latent(5), 1)),
    ]),
  ], SIGNALS);
  assert.deepEqual(set.rules.map(rulePart), [PART_REST, PART_VERDICT, PART_VERDICT, PART_REST]);
  assert.deepEqual(ruleParts(set), { verdict: 2, rest: 2 });
  assert.deepEqual([...verdictLatents(set, "res")], [1, 3, 12]);
  assert.deepEqual([...verdictLatents(set, "pr")], [1]);
  assert.deepEqual([...verdictLatents(set, "other")], []);
  assert.deepEqual(verdictEncoderIds(set), ["pr", "res"]);
  // a subset of what the whole set watches
  const all16 = new Set(set.watchedLatents("res"));
  assert.ok([...verdictLatents(set, "res")].every((l) => all16.has(l)));
  assert.deepEqual([...set.watchedLatents("res")], [1, 3, 5, 9, 12]);
});

Deno.test("verdict rules: a set without steering rules has none to wait for; one whose rules all steer has no rest", () => {
  const quiet = compilePolicySet([file([rule("a", test(latent(1), 1))])], SIGNALS);
  assert.deepEqual(ruleParts(quiet), { verdict: 0, rest: 1 });
  assert.deepEqual([...verdictLatents(quiet, "res")], []);
  assert.deepEqual(verdictEncoderIds(quiet), []);
  const steering = compilePolicySet([file([rule("s", test(latent(1), 1), STEER)])], SIGNALS);
  assert.deepEqual(ruleParts(steering), { verdict: 1, rest: 0 });
});
