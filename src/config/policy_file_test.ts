import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ConfigError, formatIssue } from "./errors.ts";
import { loadPolicyFile, parsePolicyFile } from "./policy_file.ts";

/** The issues of the ConfigError that parsing `text` throws, as `file:line:col: reason`. */
function problems(text: string, file = "p.yaml"): string[] {
  try {
    parsePolicyFile(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

// Each fixture line carries its number; columns are 1-based.
const VALID = [
  "version: 1", //                                 1
  "rules:", //                                     2
  "  - id: prompt-injection", //                   3
  "    title: Prompt injection", //                4
  "    severity: high", //                         5
  "    description: instructions to ignore", //    6
  "    when:", //                                  7
  "      sae: demo-res", //                        8
  "      latent: 0", //                            9
  "      above: 2.0", //                           10
  "  - id: email", //                              11
  "    title: E-mail address", //                  12
  "    severity: low", //                          13
  "    when: {sae: demo-res, latent: 1, above: 0}", // 14
  "",
].join("\n");

Deno.test("parsePolicyFile: a valid file gives its rules with source lines", () => {
  assert.deepEqual(parsePolicyFile(VALID, "p.yaml"), [
    {
      id: "prompt-injection",
      title: "Prompt injection",
      severity: "high",
      description: "instructions to ignore",
      sae: "demo-res",
      latent: 0,
      above: 2,
      source: { file: "p.yaml", line: 3 },
    },
    {
      id: "email",
      title: "E-mail address",
      severity: "low",
      sae: "demo-res",
      latent: 1,
      above: 0,
      source: { file: "p.yaml", line: 11 },
    },
  ]);
});

Deno.test("parsePolicyFile: an empty rule list is valid", () => {
  assert.deepEqual(parsePolicyFile("version: 1\nrules: []\n", "p.yaml"), []);
});

Deno.test("parsePolicyFile: YAML syntax errors are reported at their line and column", () => {
  const text = [
    "version: 1", //                1
    "rules:", //                    2
    "  - id: a", //                 3
    '    title: "unterminated', //  4  the string never closes
    "    severity: low", //         5
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    "p.yaml:4:12: invalid YAML: this quoted string is never closed",
  ]);
});

Deno.test("parsePolicyFile: a duplicate key is a YAML error at the second key", () => {
  const text = VALID.replace("    severity: low\n", "    severity: low\n    severity: high\n");
  assert.deepEqual(problems(text), ["p.yaml:14:5: invalid YAML: Map keys must be unique"]);
});

Deno.test("parsePolicyFile: unknown keys are errors at the key, with a hint", () => {
  const text = VALID
    .replace("    severity: high\n", "    severity: high\n    priority: high\n") // new line 6
    .replace("      above: 2.0\n", "      above: 2.0\n      treshold: 3\n"); // new line 12
  assert.deepEqual(problems(text), [
    "p.yaml:6:5: unknown key 'priority'; expected one of: id, title, severity, description, when",
    "p.yaml:12:7: unknown key 'treshold'; expected one of: sae, latent, probe, score, above",
  ]);
});

Deno.test("parsePolicyFile: a misspelt top-level key suggests the right one", () => {
  assert.deepEqual(problems("version: 1\nrule: []\n"), [
    "p.yaml:1:1: missing required key 'rules' (expected a list)",
    "p.yaml:2:1: unknown key 'rule' (did you mean 'rules'?); expected one of: version, rules",
  ]);
});

Deno.test("parsePolicyFile: wrong types say what was expected and what was found", () => {
  const text = VALID
    .replace("      latent: 0\n", "      latent: zero\n") // line 9, value col 15
    .replace("      above: 2.0\n", '      above: "2.0"\n') // line 10, value col 14
    .replace("    severity: low\n", "    severity: warning\n") // line 13, value col 15
    .replace("  - id: email\n", "  - id: Email Address\n"); // line 11, value col 9
  assert.deepEqual(problems(text), [
    'p.yaml:9:15: expected an integer latent index ≥ 0, found the string "zero"',
    'p.yaml:10:14: expected a number, found the string "2.0"',
    "p.yaml:11:9: expected a rule id of lowercase letters, digits, '.', '_' or '-' " +
    '([a-z0-9][a-z0-9._-]*), found the string "Email Address"',
    'p.yaml:13:15: expected one of info, low, medium, high, critical, found the string "warning"',
  ]);
});

Deno.test("parsePolicyFile: a fractional latent is not an integer", () => {
  const text = VALID.replace("latent: 1,", "latent: 1.5,");
  assert.deepEqual(problems(text), [
    "p.yaml:14:35: expected an integer latent index ≥ 0, found 1.5",
  ]);
});

Deno.test("parsePolicyFile: a negative threshold is rejected with the reason", () => {
  const text = VALID.replace("      above: 2.0\n", "      above: -0.5\n");
  assert.deepEqual(problems(text), [
    "p.yaml:10:14: expected a number ≥ 0, found -0.5; a latent that is not active reads as 0, " +
    "so a negative threshold would fire on every token (v0 rules only fire when a latent " +
    "rises above a threshold)",
  ]);
});

Deno.test("parsePolicyFile: a negative latent is rejected", () => {
  const text = VALID.replace("      latent: 0\n", "      latent: -3\n");
  assert.deepEqual(problems(text), ["p.yaml:9:15: expected an integer latent index ≥ 0, found -3"]);
});

Deno.test("parsePolicyFile: duplicate rule ids point at the second one and name the first", () => {
  const text = VALID.replace("  - id: email\n", "  - id: prompt-injection\n");
  assert.deepEqual(problems(text), [
    "p.yaml:11:9: duplicate rule id 'prompt-injection': expected ids to be unique, found it " +
    "already defined at line 3",
  ]);
});

Deno.test("parsePolicyFile: missing keys point at the rule that lacks them", () => {
  const text = VALID.replace("    title: E-mail address\n", "") // the rule at line 11 loses its title
    .replace("{sae: demo-res, latent: 1, above: 0}", "{sae: demo-res, above: 0}");
  assert.deepEqual(problems(text), [
    "p.yaml:11:5: missing required key 'title' (expected a string)",
    "p.yaml:13:11: expected an integer latent index ≥ 0 with 'sae'",
  ]);
});

Deno.test("parsePolicyFile: every problem in a file is reported at once", () => {
  const text = [
    "version: 2", //                 1  value col 10
    "rules:", //                     2
    "  - id: a", //                  3
    "    title: ''", //              4  value col 12
    "    severity: high", //         5
    "    when:", //                  6  empty mapping: points at the key, col 5
    "  - id: a", //                  7  duplicate, value col 9
    "    title: b", //               8
    "    severity: high", //         9
    "    when: {sae: x, latent: 0, above: -1, why: 1}", // 10
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    "p.yaml:1:10: expected version: 1 (the policy file format this latentwatch reads), found 2",
    'p.yaml:4:12: expected a non-empty string, found the string ""',
    "p.yaml:6:5: expected a mapping, found an empty value",
    "p.yaml:7:9: duplicate rule id 'a': expected ids to be unique, found it already defined at line 3",
    "p.yaml:10:38: expected a number ≥ 0, found -1; a latent that is not active reads as 0, so a " +
    "negative threshold would fire on every token (v0 rules only fire when a latent rises above " +
    "a threshold)",
    "p.yaml:10:42: unknown key 'why'; expected one of: sae, latent, probe, score, above",
  ]);
});

Deno.test("parsePolicyFile: a YAML list instead of a mapping", () => {
  assert.deepEqual(problems("- rule: a\n"), [
    "p.yaml:1:1: expected a mapping, found a list of 1 item(s)",
  ]);
});

Deno.test("loadPolicyFile: the shipped demo policies load", async () => {
  const path = fileURLToPath(new URL("../../policies/demo.yaml", import.meta.url));
  const rules = await loadPolicyFile(path);
  assert.deepEqual(rules.map((r) => [r.id, r.latent, r.severity, r.above]), [
    ["prompt-injection", 0, "high", 2],
    ["pii.email-address", 1, "low", 2],
    ["secrets.credentials", 2, "high", 2],
    ["self-harm", 3, "critical", 2],
  ]);
  assert.ok(rules.every((r) => r.sae === "demo-res" && r.source.file === path));
});

Deno.test("loadPolicyFile: a missing file is a ConfigError at 1:1", async () => {
  await assert.rejects(loadPolicyFile("/nonexistent/p.yaml"), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, "/nonexistent/p.yaml:1:1: cannot read file: no such file");
    return true;
  });
});

Deno.test("parsePolicyFile: probe rules take a score index and any finite threshold", () => {
  const text = [
    "version: 1", //                                         line 1
    "rules:", //                                             line 2
    "  - id: deception", //                                  line 3
    "    title: Deception probe", //                         line 4
    "    severity: medium", //                               line 5
    "    when: { probe: lie, above: -0.5 }", //              line 6
    "  - id: both", //                                       line 7
    "    title: Both", //                                    line 8
    "    severity: low", //                                  line 9
    "    when: { probe: lie, latent: 2, above: 1 }", //      line 10
  ].join("\n");
  assert.deepEqual(problems(text), [
    "p.yaml:10:33: expected 'score' (not 'latent') with 'probe'",
  ]);
  const [rule] = parsePolicyFile(text.split("\n").slice(0, 6).join("\n"), "p.yaml");
  assert.equal(rule.sae, "lie");
  assert.equal(rule.latent, 0);
  assert.equal(rule.above, -0.5);
  assert.equal(rule.signal, "probe");
});
