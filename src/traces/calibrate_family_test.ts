import assert from "node:assert/strict";
import { compilePolicySet, type SignalInfo } from "../core/policy/compile.ts";
import { everyTime, file, sparse, test } from "../core/policy/test_helpers.ts";
import { describeTrigger, PooledCollector, triggerTest } from "./calibrate.ts";

const SIGNALS = new Map<string, SignalInfo>([
  ["res", { kind: "sae", dSae: 4, decoderCosines: () => [1, 0.5, 0, 0.25] }],
]);

Deno.test("calibrate: a family trigger is described as one and collects the family's values", () => {
  const set = compilePolicySet([
    file([
      everyTime(
        "f",
        test({ kind: "family", sae: "res", of: 0, members: [0, 1, 3], combine: "sum" }, 1),
      ),
    ]),
  ], SIGNALS);
  const trigger = triggerTest(set.rules[0])!;
  assert.equal(
    describeTrigger(trigger),
    "res family of latent 0 (members 0, 1, 3), per token, above 1",
  );
  const c = new PooledCollector(trigger, "both");
  // token 0: latent 1 at 4 → 2 (latent 0 silent); token 1: 0 at 1, 3 at 4 → 2; token 2: 2 only → 0
  const rows = [sparse([[1, 4]]), sparse([[0, 1], [3, 4]]), sparse([[2, 5]])];
  c.push("r", 0, 3, undefined, new Map([["res", rows]]), 0);
  assert.deepStrictEqual(c.tokenValues, [2, 2]);
  assert.equal(c.requestValues.get("r"), 2);
});
