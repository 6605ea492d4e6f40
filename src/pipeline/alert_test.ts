import assert from "node:assert/strict";
import { alertId } from "../core/alert.ts";
import { PolicyEngine } from "../core/policy/engine.ts";
import { buildAlert, thresholdOf, valueAt } from "./alert.ts";
import { tokenBatch } from "./evaluate.ts";
import { frame, policies, row } from "./testdata/fixtures.ts";

const RULES = "version: 2\nrules:\n  - id: both\n    title: both high\n    severity: high\n" +
  "    when:\n      all:\n        - { sae: s, latent: 0, above: 1 }\n        - { sae: s, latent: 2, above: 0.5 }\n";

Deno.test("alert: a pure function of the firing, the frame, the latents and the time", () => {
  const set = policies(RULES);
  const f = { ...frame([[0, 0], [0, 0]]), tokenText: ["a", "b"], tenant: "t" };
  const latents = new Map([["s", [row({ 0: 0.5 }), row({ 0: 3, 2: 0.75 })]]]);
  const [firing] = new PolicyEngine(set).evaluate(tokenBatch(f, 0, latents));
  const input = {
    monitor: "mon",
    frame: f,
    firstRow: 0,
    latents,
    firing,
    policyVersion: set.version,
    labels: new Map([["s", new Map([[0, "zero"]])]]),
    time: "2025-01-01T00:00:00.000Z",
  };
  const alert = buildAlert(input);
  assert.deepStrictEqual(buildAlert(input), alert, "the same input, the same alert");
  assert.equal(alert.id, alertId("mon", "r1", "both", 1));
  assert.equal(alert.tenant, "t");
  assert.deepEqual(alert.tokens, { start: 1, end: 2, count: 1 });
  assert.deepEqual(alert.evidence, [{ position: 1, value: 3, text: "b" }]);
  assert.deepEqual(alert.latent, { sae: "s", index: 0, threshold: 1, max: 3, label: "zero" });
  assert.deepEqual(alert.latents, [
    { sae: "s", index: 0, value: 3, label: "zero", threshold: 1 },
    { sae: "s", index: 2, value: 0.75, threshold: 0.5 },
  ]);
});

Deno.test("alert: valueAt finds a latent or 0; thresholdOf reads the first above test", () => {
  const r = row({ 1: 2, 5: 3 });
  assert.equal(valueAt(r, 5), 3);
  assert.equal(valueAt(r, 4), 0);
  const rule = policies(RULES).rules[0];
  assert.equal(thresholdOf(rule, "s", 2), 0.5);
  assert.equal(thresholdOf(rule, "s", 3), undefined);
});
