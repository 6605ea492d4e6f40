import assert from "node:assert/strict";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { writeExample } from "../demo/example_trace.ts";
import { runReplayCommand } from "./replay.ts";

const DEMO_RULES = `version: 1
rules:
  - id: prompt-injection
    title: Prompt injection
    severity: high
    when: {sae: demo-res, latent: 0, above: 2.0}
  - id: self-harm
    title: Self-harm
    severity: critical
    when: {sae: demo-res, latent: 3, above: 2.0}
`;

/** The example (SAE, monitor, trace of the demo prompts) with its own rules in a temp folder. */
async function example(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/testdata`);
  await Deno.writeTextFile(`${dir}/rules.yaml`, DEMO_RULES);
  await writeExample(`${dir}/testdata`, "../rules.yaml");
  return dir;
}

Deno.test("policy test: passing tests exit 0 with PASS lines and a summary", async () => {
  const dir = await example();
  await Deno.writeTextFile(
    `${dir}/rules.test.yaml`,
    `trace: testdata/demo.trace.gz
monitor: testdata/monitor.yaml
tests:
  - name: injection
    expect: [{rule: prompt-injection, request: req-2-injection, positions: [4, 6, 7]}]
    expect_not: [{rule: prompt-injection, request: req-1-benign}]
  - name: quiet elsewhere
    expect_not: [{rule: self-harm, request: req-2-injection}]
`,
  );
  // a policy file's path finds the tests beside it
  const r = await runLatentwatch(["policy", "test", `${dir}/rules.yaml`]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /rules\.test\.yaml:\n {2}injection: PASS \(/);
  assert.match(r.stdout, /quiet elsewhere: PASS/);
  assert.match(r.stdout, /\nPASS: 2\/2\n/);
  assert.doesNotMatch(r.stdout, /FAIL/);
});

Deno.test("policy test: a failing expectation exits 1 and says what was expected and found", async () => {
  const dir = await example();
  await Deno.writeTextFile(
    `${dir}/rules.test.yaml`,
    `trace: testdata/demo.trace.gz
monitor: testdata/monitor.yaml
tests:
  - name: holds
    expect: [{rule: self-harm, request: req-5-selfharm}]
  - name: wrong request
    expect: [{rule: prompt-injection, request: req-1-benign}]
  - name: wrong positions
    expect: [{rule: self-harm, request: req-5-selfharm, positions: [4, 9]}]
  - name: fires where it should not
    expect_not: [{rule: prompt-injection}]
  - name: typo in a rule id
    expect_not: [{rule: prompt-injektion}]
`,
  );
  const r = await runLatentwatch(["policy", "test", dir]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /holds: PASS/);
  assert.match(
    r.stdout,
    /wrong request: FAIL .*\n +expected rule 'prompt-injection' to fire on request 'req-1-benign', found no firing \(it fired on req-2-injection\)/,
  );
  assert.match(r.stdout, /wrong positions: FAIL[^\n]*\n +.*found positions 4, 5 \(missing 9\)/);
  assert.match(
    r.stdout,
    /fires where it should not: FAIL[^\n]*\n +expected rule 'prompt-injection' not to fire on any request, found 1 firing\(s\): req-2-injection at 4,6,7/,
  );
  assert.match(
    r.stdout,
    /typo in a rule id: FAIL[^\n]*\n +rule 'prompt-injektion' is not in the monitor's policies/,
  );
  assert.match(r.stdout, /\nPASS: 1\/5\nFAIL: 4\/5\n/);
});

Deno.test("policy test: an invalid test file is an error with file:line:col, exit 1; bad usage exits 2", async () => {
  const dir = await example();
  await Deno.writeTextFile(
    `${dir}/bad.test.yaml`,
    "tests:\n  - name: no trace\n    expect: [{rule: x, request: r, positions: [-1]}]\n",
  );
  const r = await runLatentwatch(["policy", "test", `${dir}/bad.test.yaml`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.test\.yaml:3:\d+: .*token positions/);
  assert.match(r.stdout, /ERROR: 1 test file\(s\) could not be read/);
  assert.equal((await runLatentwatch(["policy", "test"])).code, 2);
});

Deno.test("policy calibrate: --json report for the demo rules on the demo trace", async () => {
  const dir = await example();
  const r = await runLatentwatch([
    "policy",
    "calibrate",
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
    "--traces",
    `${dir}/testdata/demo.trace.gz`,
    "--target-fpr",
    "0.01",
    "--per",
    "request",
    "--json",
    "--allow-small-sample",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.requests, 5);
  assert.equal(report.tokens, 104);
  const pi = report.rules.find((x: { rule: string }) => x.rule === "prompt-injection");
  // 1 request of 5 fires at the current threshold; 1% of 5 requests allows none
  assert.equal(pi.current.perThousandRequests, 200);
  assert.equal(pi.suggested.token, undefined);
  assert.equal(pi.suggested.request.perThousandRequests, 0);
  assert.ok(pi.suggested.request.threshold > 5, `${pi.suggested.request.threshold}`);

  // without --allow-small-sample: 5 requests cannot measure 1% (100 needed, 300 for a rough estimate)
  const refused = await runLatentwatch([
    "policy",
    "calibrate",
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
    "--traces",
    `${dir}/testdata/demo.trace.gz`,
    "--target-fpr",
    "0.01",
    "--per",
    "request",
  ]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stdout, "");
  assert.match(
    refused.stderr,
    /error: 5 benign requests: the smallest measurable false-positive rate per request is 1\/5 = 0\.2; a target of 0\.01 needs at least 100 requests to be measurable and 300 \(3\/target\) for a rough estimate/,
  );
  // 104 tokens and 5 requests at 0.3: requests measurable (4) but under 10 → warning, exit 0;
  // tokens: 104 ≥ 10, no word about them
  const warned = await runLatentwatch([
    "policy",
    "calibrate",
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
    "--traces",
    `${dir}/testdata/demo.trace.gz`,
    "--target-fpr",
    "0.3",
  ]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(
    warned.stderr,
    /warning: 5 benign requests: .* at least 4 requests .* and 10 \(3\/target\)/,
  );
  assert.doesNotMatch(warned.stderr, /benign tokens/);
  assert.doesNotMatch(warned.stdout, /\bany\b/);

  // --positives: the demo trace's injection request (req-2) fires prompt-injection at the current 2.0
  const pos = await runLatentwatch([
    "policy",
    "calibrate",
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
    "--traces",
    `${dir}/testdata/demo.trace.gz`,
    "--positives",
    `${dir}/testdata/demo.trace.gz`,
    "--target-fpr",
    "0.3",
  ]);
  assert.equal(pos.code, 0, pos.stderr);
  assert.match(pos.stdout, /detected = share of the 5 requests of 1 positive trace\(s\)/);
  // 1 request of 5 holds at 2.0: 200 requests/1000 and, the same trace as positives, 20.0% detected
  assert.match(pos.stdout, /rule prompt-injection[^]*?current +2 +\S+ +200\.00 +20\.0%/);

  const bad = await runLatentwatch(["policy", "calibrate", "--monitor", "m.yaml", "--traces", "t"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--target-fpr: expected a fraction in \(0, 1\), found null/);
});

Deno.test("policy calibrate --write: sets the suggested threshold in place, comments kept, re-linted", async () => {
  const dir = await example();
  const before = await Deno.readTextFile(`${dir}/rules.yaml`);
  await Deno.writeTextFile(`${dir}/rules.yaml`, "# reviewed thresholds\n" + before);
  const r = await runLatentwatch([
    "policy",
    "calibrate",
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
    "--traces",
    `${dir}/testdata/demo.trace.gz`,
    "--target-fpr",
    "0.01",
    "--per",
    "request",
    "--rule",
    "prompt-injection",
    "--allow-small-sample",
    "--write",
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = r.stdout.match(
    /wrote \S*rules\.yaml:7: above: ([0-9.]+) \(prompt-injection, per request\)/,
  );
  assert.ok(m, r.stdout);
  // 1% of 5 requests allows none: the largest request max, above the demo's injection values (> 5)
  assert.ok(Number(m[1]) > 5, m[1]);
  assert.match(r.stdout, /re-lint: ok \(0 error\(s\)/);
  const after = await Deno.readTextFile(`${dir}/rules.yaml`);
  assert.equal(
    after,
    "# reviewed thresholds\n" +
      before.replace(
        "when: {sae: demo-res, latent: 0, above: 2.0}",
        `when: {sae: demo-res, latent: 0, above: ${m[1]}}`,
      ),
  );
});

Deno.test("replay: prints the alerts, --json one object per alert, exit 1 for a missing trace", async () => {
  const dir = await example();
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  let code;
  try {
    code = await runReplayCommand([
      `${dir}/testdata/demo.trace.gz`,
      "--monitor",
      `${dir}/testdata/monitor.yaml`,
      "--json",
      "--quiet",
    ]);
  } finally {
    console.log = log;
  }
  assert.equal(code, 0);
  const alerts = lines.map((l) => JSON.parse(l));
  assert.deepStrictEqual(alerts.map((a) => [a.rule, a.requestId, a.positions, a.text]), [
    ["prompt-injection", "req-2-injection", [4, 6, 7], ["Ignore", "previous", "instructions"]],
    ["self-harm", "req-5-selfharm", [4, 5], ["hurt", "myself"]],
  ]);
  const missing = await runLatentwatch([
    "replay",
    `${dir}/nope.trace`,
    "--monitor",
    `${dir}/testdata/monitor.yaml`,
  ]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /replay: .*nope\.trace/);
});
