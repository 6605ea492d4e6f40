import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { RuleDef, Severity, SignalRef } from "../core/policy/ast.ts";
import { ConfigError, formatIssue } from "./errors.ts";
import { loadPolicyFileDef, parsePolicyFileDef } from "./policy_file.ts";

/** The issues of the ConfigError that parsing `text` throws, as `file:line:col: reason`. */
function problems(text: string, file = "p.yaml"): string[] {
  try {
    parsePolicyFileDef(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

/**
 * The rule a v1 file's rule becomes: one per-token `above` test on `signal`,
 * scope both, an alert on every frame where it holds. `at` is the rule's list
 * item, `whenAt` its `when` mapping (line, column).
 */
function v1Rule(
  r: { id: string; title: string; severity: Severity; description?: string },
  signal: SignalRef,
  above: number,
  at: [number, number],
  whenAt: [number, number],
  file = "p.yaml",
): RuleDef {
  return {
    id: r.id,
    title: r.title,
    severity: r.severity,
    ...(r.description !== undefined ? { description: r.description } : {}),
    tags: [],
    scope: "both",
    condition: {
      kind: "test",
      signal,
      pool: { kind: "token" },
      op: "above",
      threshold: above,
      source: { file, line: whenAt[0], col: whenAt[1] },
    },
    exceptions: [],
    actions: [{ kind: "alert" }],
    throttle: { suppress: { kind: "none" }, dedupKey: "{request_id}" },
    enabled: true,
    source: { file, line: at[0], col: at[1] },
  };
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

Deno.test("v1 file: a valid file gives its rules with source lines", () => {
  const def = parsePolicyFileDef(VALID, "p.yaml");
  assert.equal(def.version, 1);
  assert.deepEqual(def.rules, [
    v1Rule(
      {
        id: "prompt-injection",
        title: "Prompt injection",
        severity: "high",
        description: "instructions to ignore",
      },
      { kind: "latent", sae: "demo-res", index: 0 },
      2,
      [3, 5], // the list item
      [8, 7], // the block mapping under `when:`
    ),
    v1Rule(
      { id: "email", title: "E-mail address", severity: "low" },
      { kind: "latent", sae: "demo-res", index: 1 },
      0,
      [11, 5],
      [14, 11], // the flow mapping after `when: `
    ),
  ]);
  assert.deepEqual([def.macros, def.lists], [[], []]);
});

Deno.test("v1 file: an empty rule list is valid", () => {
  assert.deepEqual(parsePolicyFileDef("version: 1\nrules: []\n", "p.yaml"), {
    file: "p.yaml",
    version: 1,
    rules: [],
    macros: [],
    lists: [],
  });
});

Deno.test("v1 file: YAML syntax errors are reported at their line and column", () => {
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

Deno.test("v1 file: a duplicate key is a YAML error at the second key", () => {
  const text = VALID.replace("    severity: low\n", "    severity: low\n    severity: high\n");
  assert.deepEqual(problems(text), ["p.yaml:14:5: invalid YAML: Map keys must be unique"]);
});

Deno.test("v1 file: unknown keys are errors at the key, with a hint", () => {
  const text = VALID
    .replace("    severity: high\n", "    severity: high\n    priority: high\n") // new line 6
    .replace("      above: 2.0\n", "      above: 2.0\n      treshold: 3\n"); // new line 12
  assert.deepEqual(problems(text), [
    "p.yaml:6:5: unknown key 'priority'; expected one of: id, title, severity, description, when",
    "p.yaml:12:7: unknown key 'treshold'; expected one of: sae, latent, probe, score, above",
  ]);
});

Deno.test("v1 file: a misspelt top-level key suggests the right one", () => {
  assert.deepEqual(problems("version: 1\nrule: []\n"), [
    "p.yaml:1:1: missing required key 'rules' (expected a list)",
    "p.yaml:2:1: unknown key 'rule' (did you mean 'rules'?); expected one of: version, rules",
  ]);
});

Deno.test("v1 file: wrong types say what was expected and what was found", () => {
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

Deno.test("v1 file: a fractional latent is not an integer", () => {
  const text = VALID.replace("latent: 1,", "latent: 1.5,");
  assert.deepEqual(problems(text), [
    "p.yaml:14:35: expected an integer latent index ≥ 0, found 1.5",
  ]);
});

Deno.test("v1 file: a negative threshold is rejected with the reason", () => {
  const text = VALID.replace("      above: 2.0\n", "      above: -0.5\n");
  assert.deepEqual(problems(text), [
    "p.yaml:10:14: expected a number ≥ 0, found -0.5; a latent that is not active reads as 0, " +
    "so a negative threshold would fire on every token (v0 rules only fire when a latent " +
    "rises above a threshold)",
  ]);
});

Deno.test("v1 file: a negative latent is rejected", () => {
  const text = VALID.replace("      latent: 0\n", "      latent: -3\n");
  assert.deepEqual(problems(text), ["p.yaml:9:15: expected an integer latent index ≥ 0, found -3"]);
});

Deno.test("v1 file: duplicate rule ids point at the second one and name the first", () => {
  const text = VALID.replace("  - id: email\n", "  - id: prompt-injection\n");
  assert.deepEqual(problems(text), [
    "p.yaml:11:9: duplicate rule id 'prompt-injection': expected ids to be unique, found it " +
    "already defined at line 3",
  ]);
});

Deno.test("v1 file: missing keys point at the rule that lacks them", () => {
  const text = VALID.replace("    title: E-mail address\n", "") // the rule at line 11 loses its title
    .replace("{sae: demo-res, latent: 1, above: 0}", "{sae: demo-res, above: 0}");
  assert.deepEqual(problems(text), [
    "p.yaml:11:5: missing required key 'title' (expected a string)",
    "p.yaml:13:11: expected an integer latent index ≥ 0 with 'sae'",
  ]);
});

Deno.test("v1 file: every problem in a file is reported at once", () => {
  const text = (version: number) =>
    [
      `version: ${version}`, //        1  value col 10
      "rules:", //                     2
      "  - id: a", //                  3
      "    title: ''", //              4  value col 12
      "    severity: high", //         5
      "    when:", //                  6  empty mapping: points at the key, col 5
      "  - id: a", //                  7  duplicate, value col 9
      "    title: b", //               8
      "    severity: high", //         9
      "    when: {sae: x, latent: 0, above: -1, why: 1}", // 10  -1 at col 38, why at col 42
      "",
    ].join("\n");
  // an unknown version stops there: the rest cannot be read without it
  assert.deepEqual(problems(text(3)), [
    "p.yaml:1:10: expected version: 1 or 2 (the policy file formats this latentwatch reads), " +
    "found 3",
  ]);
  assert.deepEqual(problems(text(1)), [
    'p.yaml:4:12: expected a non-empty string, found the string ""',
    "p.yaml:6:5: expected a mapping, found an empty value",
    "p.yaml:7:9: duplicate rule id 'a': expected ids to be unique, found it already defined at line 3",
    "p.yaml:10:38: expected a number ≥ 0, found -1; a latent that is not active reads as 0, so a " +
    "negative threshold would fire on every token (v0 rules only fire when a latent rises above " +
    "a threshold)",
    "p.yaml:10:42: unknown key 'why'; expected one of: sae, latent, probe, score, above",
  ]);
  // the same rules in a v2 file: v2 wording for the empty `when` and the key list; a
  // negative threshold on an SAE latent is a compile problem in v2, not a parse one
  assert.deepEqual(problems(text(2)), [
    'p.yaml:4:12: expected a non-empty string, found the string ""',
    "p.yaml:6:5: expected a condition: a signal test ({sae, latent, above} or {probe, above}), " +
    "{all: [...]}, {any: [...]}, {not: ...} or {macro: name}, found an empty value",
    "p.yaml:7:9: duplicate rule id 'a': expected ids to be unique, found it already defined at line 3",
    "p.yaml:10:42: unknown key 'why'; expected one of: sae, latent, label, latents, family, probe, score, " +
    "pool, above, below, name",
  ]);
});

Deno.test("parsePolicyFileDef: a YAML list instead of a mapping", () => {
  assert.deepEqual(problems("- rule: a\n"), [
    "p.yaml:1:1: expected a mapping with 'version' and 'rules', found a list of 1 item(s)",
  ]);
});

Deno.test("loadPolicyFileDef: the shipped demo policies load", async () => {
  const path = fileURLToPath(new URL("../../policies/demo.yaml", import.meta.url));
  const def = await loadPolicyFileDef(path);
  assert.equal(def.file, path);
  assert.deepEqual(def.rules.map((r) => [r.id, r.severity]), [
    ["prompt-injection", "high"],
    ["pii.email-address", "low"],
    ["secrets.credentials", "high"],
    ["self-harm", "critical"],
  ]);
  assert.ok(def.rules.every((r) => r.source.file === path));
});

Deno.test("loadPolicyFileDef: a missing file is a ConfigError at 1:1", async () => {
  await assert.rejects(loadPolicyFileDef("/nonexistent/p.yaml"), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, "/nonexistent/p.yaml:1:1: cannot read file: no such file");
    return true;
  });
});

Deno.test("v1 file: probe rules take a score index and any finite threshold", () => {
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
  const { rules } = parsePolicyFileDef(text.split("\n").slice(0, 6).join("\n"), "p.yaml");
  assert.deepEqual(rules, [
    v1Rule(
      { id: "deception", title: "Deception probe", severity: "medium" },
      { kind: "probe", probe: "lie", index: 0 }, // no score: score 0
      -0.5,
      [3, 5],
      [6, 11],
    ),
  ]);
});
