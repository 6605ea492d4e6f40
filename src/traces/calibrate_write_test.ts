import assert from "node:assert/strict";
import { setThresholds, thresholdText } from "./calibrate_write.ts";

const POLICY = `version: 1 # top comment
rules:
  # injection, flow style, with a pool that has its own 'above'
  - id: a
    when: { sae: r, latent: 0, pool: { count: { window: 4, above: 3.0 } }, above: 1 } # trailing
  - id: b
    when:
      sae: r
      latent: 1
      below:   -0.5   # spaced
`;

Deno.test("setThresholds: only the scalar changes; comments, spacing and the pool's own 'above' stay", () => {
  const out = setThresholds(POLICY, [
    { line: 5, op: "above", value: 2.75 },
    { line: 8, op: "below", value: -1.25 },
  ]);
  assert.equal(
    out,
    `version: 1 # top comment
rules:
  # injection, flow style, with a pool that has its own 'above'
  - id: a
    when: { sae: r, latent: 0, pool: { count: { window: 4, above: 3.0 } }, above: 2.75 } # trailing
  - id: b
    when:
      sae: r
      latent: 1
      below:   -1.25   # spaced
`,
  );
  assert.throws(
    () => setThresholds(POLICY, [{ line: 2, op: "above", value: 1 }]),
    /line 2: no 'above:'/,
  );
});

Deno.test("thresholdText: the shortest text that reads back exactly", () => {
  assert.equal(thresholdText(3), "3");
  assert.equal(thresholdText(2.961), "2.961");
  assert.equal(thresholdText(Math.fround(2.961)), "2.9609999656677246");
});
