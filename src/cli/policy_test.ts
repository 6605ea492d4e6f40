import assert from "node:assert/strict";
import { join } from "node:path";
import { runLatentwatch } from "../../tests/helpers/cli.ts";

/** Run `latentwatch policy ...args` from `cwd` (the repo root by default). */
const latentwatch = (args: string[], cwd?: string) => runLatentwatch(["policy", ...args], { cwd });

/** Lines of `text`, without the trailing empty one. */
function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

const RULES = [
  "version: 1", //                         1
  "rules:", //                             2
  "  - id: injection", //                  3
  "    title: Prompt injection", //        4
  "    severity: high", //                 5
  "    when:", //                          6
  "      sae: res", //                     7  value col 12
  "      latent: 2", //                    8  value col 15
  "      above: 1.5", //                   9
  "",
].join("\n");

/** A temp folder with a monitor (SAE `res` of d_sae 3) and a policy file; returns its path. */
async function fixture(opts: { withSae?: boolean } = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-policy-lint-" });
  await Deno.writeTextFile(join(dir, "rules.yaml"), RULES);
  await Deno.writeTextFile(
    join(dir, "monitor.yaml"),
    [
      "monitor: t", //              1
      "model: m", //                2
      "hook: h", //                 3
      "saes:", //                   4
      "  - id: res", //             5
      "    path: sae", //           6  value col 11
      "policies: [rules.yaml]", //  7
      "",
    ].join("\n"),
  );
  if (opts.withSae !== false) {
    await Deno.mkdir(join(dir, "sae"));
    await Deno.writeTextFile(join(dir, "sae", "cfg.json"), JSON.stringify({ d_sae: 3, d_in: 4 }));
  }
  return dir;
}

Deno.test("policy lint: the demo policies are valid (exit 0, one OK line)", async () => {
  const r = await latentwatch(["lint", "policies/demo.yaml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ["policy lint: OK, 1 file(s), 4 rule(s)"]);
  assert.equal(r.stderr, "");
});

Deno.test("policy lint: errors are file:line:col: error: reason, exit 1", async () => {
  const dir = await fixture();
  try {
    const bad = RULES.replace("      above: 1.5\n", "      above: -1\n      below: 3\n");
    await Deno.writeTextFile(join(dir, "bad.yaml"), bad);
    const r = await latentwatch(["lint", "bad.yaml", "rules.yaml"], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.deepEqual(lines(r.stderr), [
      "bad.yaml:9:14: error: expected a number ≥ 0, found -1; a latent that is not active reads " +
      "as 0, so a negative threshold would fire on every token (v0 rules only fire when a latent " +
      "rises above a threshold)",
      "bad.yaml:10:7: error: unknown key 'below'; expected one of: sae, latent, probe, score, above",
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: duplicate rule ids across files are errors even without a monitor", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "again.yaml"), RULES);
    const r = await latentwatch(["lint", "rules.yaml", "again.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      "again.yaml:3:5: error: rule 'injection': duplicate rule id 'injection': expected ids to be " +
      "unique across files, found it already defined at rules.yaml:3:5",
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: compiles against the monitor's SAEs (exit 0)", async () => {
  const dir = await fixture();
  try {
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      "policy lint: OK, 1 file(s), 1 rule(s), compiled against monitor 't'",
    ]);
    // With no files, the monitor's own policies are linted.
    const own = await latentwatch(["lint", "--monitor", "monitor.yaml"], dir);
    assert.equal(own.code, 0, own.stderr);
    assert.match(own.stdout, /^policy lint: OK, 1 file\(s\), 1 rule\(s\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: latent out of range and unknown SAE point at the field", async () => {
  const dir = await fixture();
  try {
    const bad = RULES.replace("      latent: 2\n", "      latent: 3\n") + [
      "  - id: other", //                10
      "    title: Other SAE", //         11
      "    severity: low", //            12
      "    when: {sae: nope, latent: 0, above: 0}", // 13  sae value col 17
      "",
    ].join("\n");
    await Deno.writeTextFile(join(dir, "rules.yaml"), bad);
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      // at the test's mapping: line 7 is its first key under `when:`
      "rules.yaml:7:7: error: rule 'injection': expected a latent index in 0..2 (SAE 'res' has " +
      "d_sae 3), found 3",
      "rules.yaml:13:11: error: rule 'other': unknown SAE 'nope'; expected one the monitor loads (res)",
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: a missing SAE folder is an error at the monitor's path", async () => {
  const dir = await fixture({ withSae: false });
  try {
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      `monitor.yaml:6:11: error: SAE 'res': expected an SAE folder or file at ${
        join(dir, "sae")
      }, found nothing there`,
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: a cfg.json without d_sae is an error at the monitor's path", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "sae", "cfg.json"), JSON.stringify({ d_sae: 0, d_in: 4 }));
    const r = await latentwatch(["lint", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      `monitor.yaml:6:11: error: SAE 'res': expected a positive integer d_sae in ` +
      `${join(dir, "sae", "cfg.json")}, found 0`,
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: a missing file is reported, exit 1", async () => {
  const r = await latentwatch(["lint", "no/such/policy.yaml"]);
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.stderr), [
    "no/such/policy.yaml:1:1: error: cannot read file: no such file",
    "policy lint: 1 error(s) in 1 file(s)",
  ]);
});

Deno.test("policy: bad usage exits 2", async () => {
  for (const args of [[], ["lint"], ["frobnicate"], ["lint", "--bogus", "x.yaml"]]) {
    const r = await latentwatch(args);
    assert.equal(r.code, 2, `args ${JSON.stringify(args)}: ${r.stderr}`);
    assert.match(r.stderr, /usage: latentwatch policy lint/);
  }
  const help = await latentwatch(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: latentwatch policy lint/);
});

const V2 = [
  "version: 2", //                                                      1
  "macros:", //                                                         2
  "  - macro: unused_one", //                                           3
  "    when: { sae: res, latent: 1, above: 1 }", //                     4
  "  - macro: spike", //                                                5
  "    when: { sae: res, latent: 2, pool: { max: 4 }, above: 2 }", //   6
  "rules:", //                                                          7
  "  - id: never", //                                                   8
  "    title: Never", //                                                9
  "    severity: low", //                                               10
  "    tags: [aml.t0051]", //                                           11
  "    when:", //                                                       12
  "      all:", //                                                      13
  "        - macro: spike", //                                          14
  "        - { sae: res, latent: 2, pool: { max: 4 }, below: 1 }", //   15
  "",
].join("\n");

Deno.test("policy lint: v2 warnings without a monitor (unused macro, never fires, ATLAS tag), exit 0", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "v2.yaml"), V2);
    const r = await latentwatch(["lint", "v2.yaml"], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stderr), [
      "v2.yaml:3:5: warning: macro 'unused_one' is defined but no rule uses it",
      "v2.yaml:11:12: warning: tag 'aml.t0051' looks like a MITRE ATLAS id but is not one: " +
      "expected AML.Tdddd or AML.Tdddd.ddd (a technique, e.g. AML.T0051.000) or AML.TAdddd " +
      "(a tactic); did you mean 'AML.T0051'?",
      lines(r.stderr)[2],
    ]);
    assert.match(
      lines(r.stderr)[2],
      /^v2\.yaml:13:7: warning: rule 'never': condition can never hold/,
    );
    assert.deepEqual(lines(r.stdout), ["policy lint: OK, 1 file(s), 1 rule(s), 3 warning(s)"]);
    // --strict: warnings fail
    const strict = await latentwatch(["lint", "v2.yaml", "--strict"], dir);
    assert.equal(strict.code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --json: one document with errors and warnings", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(
      join(dir, "v2.yaml"),
      V2.replace("latent: 2, pool", "latent: 7, pool"),
    );
    const r = await latentwatch([
      "lint",
      "v2.yaml",
      "rules.yaml",
      "--monitor",
      "monitor.yaml",
      "--json",
    ], dir);
    assert.equal(r.code, 1);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, false);
    assert.equal(doc.monitor, "t");
    assert.equal(doc.rules, 2);
    assert.deepEqual(
      doc.errors.map((e: { line: number; col: number; code: string }) =>
        `${e.line}:${e.col} ${e.code}`
      ),
      ["6:11 latent-range"],
    );
    assert.ok(doc.warnings.some((w: { code: string }) => w.code === "unused-macro"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: a folder lints every policy file in it, skipping tests and testdata", async () => {
  const r = await latentwatch(["lint", "policies", "--json"]);
  assert.equal(r.code, 0, r.stdout);
  const doc = JSON.parse(r.stdout);
  assert.deepEqual(doc.files, [
    "policies/demo.yaml",
    "policies/examples/agent-tools.yaml",
    "policies/examples/gemma-2-2b.yaml",
  ]);
  assert.deepEqual(doc.errors, []);
  // the only warning is the shadow rule kept disabled on purpose
  assert.deepEqual(doc.warnings.map((w: { code: string }) => w.code), ["disabled-rule"]);
});

Deno.test("policy lint --monitor: the demo policies against the demo trace's monitor", async () => {
  const r = await latentwatch(["lint", "--monitor", "policies/testdata/monitor.yaml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), [
    "policy lint: OK, 1 file(s), 4 rule(s), compiled against monitor 'demo-example'",
  ]);
});

const ONE_PASS = [
  "version: 2", //                                                1
  "rules:", //                                                    2
  "  - id: first", //                                             3
  "    title: First", //                                          4
  "    severity: high", //                                        5
  "    when: { macro: nope }", //                                 6  semantic: unknown macro
  "  - id: second", //                                            7
  "    title: Second", //                                         8
  "    severity: urgent", //                                      9  schema: not a severity
  "    when: { sae: res, latent: 1, above: 1 }", //               10
  "  - id: third", //                                             11
  "    title: Third", //                                          12
  "    severity: low", //                                         13
  '    when: { sae: res, label: "prompt injecton", above: 1 }', // 14 semantic: misspelled label
  "",
].join("\n");

Deno.test("policy lint: schema and semantic errors in one run, sorted, valid rules still checked", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "p.yaml"), ONE_PASS);
    const r = await latentwatch(["lint", "p.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      "p.yaml:6:11: error: rule 'first': unknown macro 'nope'; expected one of the macros defined (none)",
      'p.yaml:9:15: error: expected one of info, low, medium, high, critical, found the string "urgent"',
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: a misspelled label gets 'did you mean', case and spaces ignored", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(
      join(dir, "labels.jsonl"),
      [
        { modelId: "m", layer: "res", index: "0", description: "French text" },
        { modelId: "m", layer: "res", index: "1", description: "prompt injection" },
      ].map((row) => JSON.stringify(row)).join("\n") + "\n",
    );
    const monitor = await Deno.readTextFile(join(dir, "monitor.yaml"));
    await Deno.writeTextFile(
      join(dir, "monitor.yaml"),
      monitor.replace("    path: sae\n", "    path: sae\n    labels: labels.jsonl\n"),
    );
    await Deno.writeTextFile(
      join(dir, "p.yaml"),
      ONE_PASS.replace("{ macro: nope }", '{ sae: res, label: "PromptInjection", above: 1 }')
        .replace("severity: urgent", "severity: medium"),
    );
    const r = await latentwatch(["lint", "p.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      "p.yaml:6:11: error: rule 'first': unknown latent label 'PromptInjection' for SAE 'res'; " +
      "expected a loaded label (matched exactly, ignoring case) (did you mean 'prompt injection'?)",
      "p.yaml:14:11: error: rule 'third': unknown latent label 'prompt injecton' for SAE 'res'; " +
      "expected a loaded label (matched exactly, ignoring case) (did you mean 'prompt injection'?)",
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: a folder skips monitor files, rule tests and testdata, a note each", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "rules.test.yaml"), "tests: []\n");
    await Deno.mkdir(join(dir, "testdata"));
    await Deno.writeTextFile(join(dir, "testdata", "broken.yaml"), "version: 9\n");
    const r = await latentwatch(["lint", "."], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stderr), [
      "rules.test.yaml: note: skipped, a rule test (*.test.yaml; see policy test)",
      "testdata: note: skipped, a testdata folder (fixtures, not policies)",
      "monitor.yaml: note: skipped, a monitor file (monitor: and saes:), not a policy",
    ]);
    assert.deepEqual(lines(r.stdout), ["policy lint: OK, 1 file(s), 1 rule(s)"]);
    // named on the command line, a file is linted as a policy whatever it holds
    const named = await latentwatch(["lint", "monitor.yaml"], dir);
    assert.equal(named.code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
