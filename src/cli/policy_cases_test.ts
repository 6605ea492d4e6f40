import assert from "node:assert/strict";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { absorptionPolicy, writeAbsorptionMonitor } from "../demo/absorption_fixture.ts";
import { writeExample } from "../demo/example_trace.ts";

/**
 * Rules over the demo SAE (`demo-res`, 16 latents; 2 is labelled
 * "credential / API key"). `leak` has exceptions on a tenant and on a
 * metadata key; `spike` is a pooled test guarded by a `not`.
 */
const RULES = [
  "version: 2", //                                                               1
  "rules:", //                                                                   2
  "  - id: leak", //                                                             3
  "    title: Leak", //                                                          4
  "    severity: high", //                                                       5
  "    when: { sae: demo-res, latent: 2, above: 2.0 }", //                       6  test col 11
  "    exceptions:", //                                                          7
  "      - { name: red team, tenant: [internal-redteam] }", //                   8
  "      - { name: payments, metadata: { team: [payments] } }", //               9
  "  - id: spike", //                                                            10
  "    title: Spike", //                                                         11
  "    severity: low", //                                                        12
  "    suppress: none", //                                                       13
  "    when:", //                                                                14
  "      all:", //                                                               15
  "        - { sae: demo-res, latent: 1, pool: { max: 3 }, above: 2 }", //       16 col 11
  "        - not: { sae: demo-res, latent: 3, above: 1 }", //                    17 col 16
  "",
].join("\n");

/** The demo example (SAE, labels, monitor, trace) with `RULES` in a temp folder. */
async function example(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-policy-cases-" });
  await Deno.mkdir(`${dir}/testdata`);
  await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
  await writeExample(`${dir}/testdata`, "../rules.yaml");
  return dir;
}

/** Run `body` with a fresh {@linkcode example} folder, removed afterwards. */
async function withExample(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await example();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Run `policy test <file>` from `dir` after writing `text` to it. */
async function policyTest(dir: string, text: string, ...flags: string[]) {
  await Deno.writeTextFile(`${dir}/rules.test.yaml`, text);
  return await runLatentwatch(["policy", "test", "rules.test.yaml", ...flags], { cwd: dir });
}

Deno.test("policy test, given values: positions computed by hand, exact with --verbose", async () => {
  await withExample(async (dir) => {
    const r = await policyTest(
      dir,
      `monitor: testdata/monitor.yaml
tests:
  - name: by hand
    tokens: ["a", "b", "c", "d", "e", "f"]
    signals:
      - { sae: demo-res, label: "credential / API key", values: [0, 3, 0, 5, 0, 0] }
      - { sae: demo-res, latent: 1, values: [0, 3, 1, 0, 1, 0] }
      - { sae: demo-res, latent: 3, values: { 2: 2 } }
    expect:
      - { rule: leak, positions: [1, 3] }
      - { rule: spike, positions: [1] }
`,
      "--verbose",
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /by hand: PASS/);
    // leak: latent 2 above 2 at 1 (3) and 3 (5), one firing of the frame, value at the first.
    // spike: max of latent 1 over 3 tokens is 0,3,3,3,1,1; the rule is evaluated where latent
    // 1 is active (1, 2, 4): above 2 at 1 and 2, but at 2 latent 3 (2 > 1) vetoes it.
    assert.match(r.stdout, /\n {6}fired: leak at 1,3 value 3\n {6}fired: spike at 1 value 3\n/);

    // the same case expecting a position it does not fire at fails
    const bad = await policyTest(
      dir,
      `monitor: testdata/monitor.yaml
tests:
  - name: wrong position
    tokens: 6
    signals:
      - { sae: demo-res, latent: 1, values: [0, 3, 1, 0, 1, 0] }
      - { sae: demo-res, latent: 3, values: { 2: 2 } }
    expect:
      - { rule: spike, positions: [2] }
`,
    );
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(
      bad.stdout,
      /wrong position: FAIL .*\n +expected rule 'spike' on request 'test' to fire at positions 2, found positions 1 \(missing 2\)/,
    );
  });
});

Deno.test("policy test, given values: the failing case's condition table, textually", async () => {
  await withExample(async (dir) => {
    const r = await policyTest(
      dir,
      `monitor: testdata/monitor.yaml
tests:
  - name: vetoed
    request: { id: req-9 }
    tokens: ["ab", "cd", "ef", "gh", "ij", "kl"]
    signals:
      - { sae: demo-res, latent: 1, values: [0, 3, 1, 0, 1, 0] }
      - { sae: demo-res, latent: 3, values: { 2: 2 } }
    expect_not:
      - { rule: spike }
`,
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const out = r.stdout.split("\n");
    const at = out.findIndex((l) => l.includes("vetoed: FAIL"));
    assert.deepEqual(out.slice(at + 1, at + 14), [
      "    expected rule 'spike' not to fire on request 'req-9', found 1 firing(s): req-9 at 1",
      "    why: rule 'spike' on request 'req-9', per token:",
      // the monitor's labels name the latents
      '      #1 e_mail_address (rules.yaml:16:11 demo-res latent 1 "e-mail address"): above 2',
      '      #2 self_harm (rules.yaml:17:16 demo-res latent 3 "self-harm"): above 1',
      "      pos  token  #1   #2   holds  fired",
      '      0    "ab"   0 ✗  0 ✗  no     no',
      '      1    "cd"   3 ✓  0 ✗  yes    yes',
      '      2    "ef"   3 ✓  2 ✓  no     no',
      '      3    "gh"   3 ✓  0 ✗  yes    no',
      '      4    "ij"   1 ✗  0 ✗  no     no',
      '      5    "kl"   1 ✗  0 ✗  no     no',
      "      (#n: pooled value, ✓ held; holds: the rule's whole condition; fired: where the engine " +
      "fired, which evaluates a rule only where a trigger signal is active, then applies " +
      "exceptions and suppression)",
      "--------------------------------------------------------------------------------",
    ]);
  });
});

Deno.test("policy test, given values: exceptions on tenant and on metadata", async () => {
  await withExample(async (dir) => {
    const signals = `    tokens: ["key", "sk-123"]
    signals:
      - { sae: demo-res, latent: 2, values: [0, 6] }
`;
    const r = await policyTest(
      dir,
      `monitor: testdata/monitor.yaml
tests:
  - name: fires for acme
    request: { tenant: acme, meta: { team: billing } }
${signals}    expect: [{ rule: leak, positions: [1] }]
  - name: not for the red team
    request: { tenant: internal-redteam }
${signals}    expect_not: [{ rule: leak }]
  - name: not for the payments team
    request: { tenant: acme, meta: { team: payments } }
${signals}    expect_not: [{ rule: leak }]
  - name: wrongly expected for the red team
    request: { tenant: internal-redteam }
${signals}    expect: [{ rule: leak }]
`,
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /fires for acme: PASS/);
    assert.match(r.stdout, /not for the red team: PASS/);
    assert.match(r.stdout, /not for the payments team: PASS/);
    assert.match(
      r.stdout,
      /wrongly expected for the red team: FAIL .*\n +expected rule 'leak' to fire on request 'test', found no firing/,
    );
    assert.match(r.stdout, /\nPASS: 3\/4\nFAIL: 1\/4\n/);
  });
});

Deno.test("policy test, recorded trace: request overrides make the exceptions apply", async () => {
  await withExample(async (dir) => {
    const r = await policyTest(
      dir,
      `monitor: testdata/monitor.yaml
trace: testdata/demo.trace.gz
tests:
  - name: as recorded
    expect: [{ rule: leak, request: req-4-key, positions: [8] }]
  - name: one request as the red team
    request: { id: req-4-key, tenant: internal-redteam }
    expect: [{ rule: leak, request: req-3-pii }]
    expect_not: [{ rule: leak, request: req-4-key }]
  - name: every request from payments
    request: { meta: { team: payments } }
    expect_not: [{ rule: leak }]
  - name: every request from billing
    request: { meta: { team: billing } }
    expect: [{ rule: leak, request: req-4-key, positions: [8] }]
  - name: wrongly quiet for payments
    request: { meta: { team: payments } }
    expect: [{ rule: leak, request: req-4-key }]
`,
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    for (const name of ["as recorded", "one request as the red team", "every request from"]) {
      assert.match(r.stdout, new RegExp(`${name}[^\\n]*: PASS`));
    }
    assert.match(r.stdout, /every request from billing: PASS/);
    // the failing one shows why, from the trace: latent 2 at token 8 held, the rule did not fire
    assert.match(
      r.stdout,
      /wrongly quiet for payments: FAIL .*\n +expected rule 'leak' to fire on request 'req-4-key', found no firing \(it fired on no request\)\n +why: rule 'leak' on request 'req-4-key', per token:\n +#1 credential_api_key \(rules\.yaml:6:11 demo-res latent 2 "credential \/ API key"\): above 2\n/,
    );
    assert.match(r.stdout, /\n {6}8 +"[^"]*" +\d+(\.\d+)? ✓ +yes +no\n/);
    assert.match(r.stdout, /\nPASS: 4\/5\nFAIL: 1\/5\n/);
  });
});

Deno.test("policy test, given values: bad values are errors at file:line:col", async () => {
  await withExample(async (dir) => {
    const r = await policyTest(
      dir,
      [
        "monitor: testdata/monitor.yaml", //                                        1
        "tests:", //                                                                2
        "  - name: bad", //                                                         3
        '    tokens: ["a", "b", "c"]', //                                           4
        "    signals:", //                                                          5
        "      - { sae: demo-res, latent: 1, values: [0, 1] }", //                  6 values col 45
        "      - { sae: demo-res, latent: 2, values: [0, -1, 0] }", //              7 -1 col 49
        "      - { sae: nope, latent: 2, values: [0, 1, 0] }", //                   8 sae col 16
        '      - { sae: demo-res, label: "credentials", values: [0, 1, 0] }', //    9 label col 33
        "      - { sae: demo-res, latent: 16, values: { 1: 3 } }", //               10 latent col 34
        "      - { sae: demo-res, latent: 3, values: { 7: 3 } }", //                11 key col 47
        "    expect: [{ rule: leak }]", //                                          12
        "",
      ].join("\n"),
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.deepEqual(r.stderr.trimEnd().split("\n"), [
      "rules.test.yaml:6:45: expected 3 values (one per token), found 2",
      "rules.test.yaml:7:49: expected a value ≥ 0 (SAE 'demo-res' latent 2: SAE latents are 0 " +
      "or positive), found -1",
      "rules.test.yaml:8:16: unknown SAE 'nope'; expected one the monitor loads (demo-res)",
      "rules.test.yaml:9:33: unknown latent label 'credentials' for SAE 'demo-res'; expected a " +
      "loaded label (matched exactly, ignoring case)",
      "rules.test.yaml:10:34: expected a latent index in 0..15 (SAE 'demo-res' has d_sae 16), " +
      "found 16",
      "rules.test.yaml:11:47: expected a token position in 0..2, found '7'",
    ]);
    assert.match(r.stdout, /ERROR: 1 test file\(s\) could not be read/);

    // schema: not finite, a request in an expectation, both a trace and signals
    const schema = await policyTest(
      dir,
      [
        "monitor: testdata/monitor.yaml", //                                        1
        "tests:", //                                                                2
        "  - name: bad", //                                                         3
        "    trace: testdata/demo.trace.gz", //                                     4 col 12
        "    signals:", //                                                          5
        "      - { probe: p, values: [.nan, .inf] }", //                             6 cols 30, 36
        "    expect: [{ rule: leak, request: r }]", //                              7
        "",
      ].join("\n"),
    );
    assert.equal(schema.code, 1);
    assert.deepEqual(schema.stderr.trimEnd().split("\n"), [
      "rules.test.yaml:6:30: expected a finite number, found .nan",
      "rules.test.yaml:6:36: expected a finite number, found .inf",
    ]);
    const kinds = await policyTest(
      dir,
      [
        "monitor: testdata/monitor.yaml",
        "tests:",
        "  - name: bad",
        "    trace: testdata/demo.trace.gz", //                                     4 col 12
        "    tokens: 2",
        "    expect: [{ rule: leak, request: r }]", //                              6 col 37
        "",
      ].join("\n"),
    );
    assert.deepEqual(kinds.stderr.trimEnd().split("\n"), [
      "rules.test.yaml:4:12: test 'bad': expected either 'trace' (replay a recording) or " +
      "'signals'/'tokens' (given values), found both",
      "rules.test.yaml:6:37: test 'bad': expected no 'request' here: a case with given values " +
      "is one request (name it with request.id)",
    ]);
  });
});

Deno.test("policy test: the example tests under policies/ pass (trace and given values)", async () => {
  const r = await runLatentwatch(["policy", "test", "policies"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\(given values\): PASS/);
  assert.match(r.stdout, /excepted \(trace\): PASS/);
  assert.doesNotMatch(r.stdout, /FAIL/);
});

Deno.test("policy test, given values: a family rule fires where only the absorbing child is active; its table row is the family's value", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-policy-cases-family-" });
  try {
    await writeAbsorptionMonitor(dir, absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 }));
    // the child (latent 1) alone at 1: its decoder (1/√2, 1/√2, 0, …) has cosine 1/√2 with the
    // parent's (1, 0, …), so the family reads 2/√2 ≈ 1.414 there; the parent alone at 3 reads 3
    const r = await policyTest(
      dir,
      `monitor: monitor.yaml
tests:
  - name: absorbed
    tokens: ["the", "elephant", "is", "Eve"]
    signals:
      - { sae: res, label: elephant, values: { 1: 2 } }
      - { sae: res, latent: 0, values: { 3: 3 } }
    expect:
      - { rule: parent-only, positions: [3] }
    expect_not:
      - { rule: parent-family }
`,
    );
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const out = r.stdout.split("\n");
    const at = out.findIndex((l) => l.includes("why: rule 'parent-family'"));
    assert.ok(at > 0, r.stdout);
    assert.deepEqual(out.slice(at + 1, at + 7), [
      // the family test starts at line 12 (`sae: res` under `when:`), printed to 4 digits
      '      #1 starts_with_e_family (policies.yaml:12:7 res family of latent 0 "starts with E"): above 1',
      "      pos  token       #1       holds  fired",
      '      0    "the"       0 ✗      no     no',
      '      1    "elephant"  1.414 ✓  yes    yes',
      '      2    "is"        0 ✗      no     no',
      '      3    "Eve"       3 ✓      yes    yes',
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
