import assert from "node:assert/strict";
import { absorptionPolicy, writeAbsorptionMonitor } from "../demo/absorption_fixture.ts";
import { lintPolicies } from "./policy.ts";

Deno.test("policy lint --monitor: a single-latent test with an absorbing neighbour is warned at its file:line:col", async () => {
  const dir = await Deno.makeTempDir();
  const monitor = await writeAbsorptionMonitor(
    dir,
    absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 }),
  );
  const report = await lintPolicies([], { monitor });
  assert.equal(report.ok, true, JSON.stringify(report.errors));
  const found = report.warnings.filter((w) => w.code === "absorption");
  // absorptionPolicy writes `when: {sae: res, latent: 0, above: 1}` on line 6, the mapping at col 11
  assert.deepStrictEqual(
    found.map((w) => [w.file, w.line, w.col, w.rule]),
    [[`${dir}/policies.yaml`, 6, 11, "parent-only"]],
  );
  assert.match(found[0].reason, /latent 0 'starts with E' of SAE 'res' has 1 latent whose decoder/);
  assert.match(found[0].reason, /1 'elephant' \(0\.71\)/);
  assert.match(found[0].reason, /'family: \{of: 0, members: \[0, 1\]\}' in place of 'latent: 0'/);
  // the distractor (cosine 0.4) is below the lint's 0.5; the family rule is not warned
  assert.doesNotMatch(found[0].reason, /grey things/);
});

Deno.test("policy lint: without a monitor a family test is not an error, and no absorption is claimed", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/p.yaml`;
  await Deno.writeTextFile(path, absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 }));
  const report = await lintPolicies([path]);
  assert.equal(report.ok, true, JSON.stringify(report.errors));
  assert.equal(report.warnings.filter((w) => w.code === "absorption").length, 0);
});

Deno.test("policy lint --monitor: a family member against the concept is an error at the test", async () => {
  const dir = await Deno.makeTempDir();
  const monitor = await writeAbsorptionMonitor(
    dir,
    "version: 2\nrules:\n  - id: f\n    title: F\n    severity: low\n" +
      "    when: {sae: res, family: {of: 0, members: [0, 3]}, above: 1}\n",
  );
  const report = await lintPolicies([], { monitor });
  assert.equal(report.ok, false);
  assert.deepStrictEqual(
    report.errors.map((e) => [e.line, e.col, e.code]),
    [[6, 11, "family"]],
  );
  assert.match(report.errors[0].reason, /found 3 \(cosine 0\.000\)/);
});

Deno.test("policy lint --monitor: a test by label is checked too, and the suggestion names the label", async () => {
  const dir = await Deno.makeTempDir();
  const monitor = await writeAbsorptionMonitor(
    dir,
    "version: 2\nrules:\n  - id: by-label\n    title: L\n    severity: low\n" +
      '    when: {sae: res, label: "Starts with E", above: 1}\n',
  );
  const report = await lintPolicies([], { monitor });
  const found = report.warnings.filter((w) => w.code === "absorption");
  assert.deepStrictEqual(found.map((w) => [w.line, w.col, w.rule]), [[6, 11, "by-label"]]);
  assert.match(found[0].reason, /in place of 'label: "Starts with E"'/);
});
