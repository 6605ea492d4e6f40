import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { parsePolicyFileDef } from "./policy_file.ts";
import {
  compilePolicySet,
  formatProblem,
  PolicyCompileError,
  type SignalInfo,
} from "../core/policy/compile.ts";

const SIGNALS = new Map<string, SignalInfo>([
  ["res12", {
    kind: "sae",
    dSae: 64,
    labels: new Map([[10, "E-mail address!"], [20, "credential"], [21, "credential"]]),
  }],
  ["jb", { kind: "probe", dSae: 2 }],
]);

const compileText = (text: string) =>
  compilePolicySet([parsePolicyFileDef(text, "p.yaml")], SIGNALS);

Deno.test("condition names: written names, the default rule, made unique, macros included", () => {
  const set = compileText([
    "version: 2",
    "macros:",
    "  - { macro: creds, when: { sae: res12, latent: 20, above: 3, name: cred } }",
    "rules:",
    "  - id: r",
    "    title: R",
    "    severity: high",
    "    when:",
    "      all:",
    "        - { sae: res12, latent: 10, pool: { max: 8 }, above: 5 }", // label slugged
    "        - { sae: res12, latent: 30, above: 1 }", // no label: <sae>.<latent>
    "        - { sae: res12, latent: 30, pool: { max: 4 }, above: 1 }", // taken: _2
    "        - { probe: jb, score: 1, above: 0.5 }", // <probe>.<score>
    "        - { sae: res12, latents: [40, 41], above: 2, name: many }", // many.<latent>
    "        - { macro: creds }",
    "        - { not: { macro: creds } }", // the same macro test: one condition
    "        - { sae: res12, latent: 21, above: 1, name: res12-30 }",
    "",
  ].join("\n"));
  const names = set.rules[0].conditions.map((c) => c.name);
  assert.deepEqual(names, [
    "e_mail_address",
    "res12.30",
    "res12.30_2",
    "jb.1",
    "many.40",
    "many.41",
    "cred",
    "res12-30",
  ]);
  // the macro's condition is at the macro's line
  assert.equal(set.rules[0].conditions[6].source.line, 3);
});

Deno.test("condition names: a name written twice in a rule is an error at file:line:col", () => {
  const text = [
    "version: 2", //                                                          1
    "rules:", //                                                              2
    "  - id: r", //                                                           3
    "    title: R", //                                                        4
    "    severity: high", //                                                  5
    "    when:", //                                                           6
    "      all:", //                                                          7
    "        - { sae: res12, latent: 10, above: 5, name: x }", //             8
    "        - { sae: res12, latent: 20, above: 3, name: x }", //             9
    "",
  ].join("\n");
  let err: unknown;
  try {
    compileText(text);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof PolicyCompileError, String(err));
  assert.deepEqual(err.problems.map(formatProblem), [
    "p.yaml:9:11: rule 'r': duplicate condition name 'x': expected names unique within a rule, " +
    "found it already used at p.yaml:8:11",
  ]);
  assert.equal(err.problems[0].code, "duplicate-condition-name");
  // the same name in two rules is fine
  compileText(text.replace(
    "name: x }\n        - {",
    "name: x }\n  - id: s\n    title: S\n" +
      "    severity: low\n    when:\n      all:\n        - {",
  ));
});

Deno.test("condition names: the schema refuses a name with a dot or a leading digit", () => {
  for (const bad of ["a.b", "1x", ""]) {
    assert.throws(
      () =>
        parsePolicyFileDef(
          "version: 2\nrules:\n  - id: r\n    title: R\n    severity: high\n" +
            `    when: { sae: res12, latent: 1, above: 1, name: "${bad}" }\n`,
          "p.yaml",
        ),
      (e: unknown) =>
        e instanceof ConfigError && /p\.yaml:6:\d+: .*condition name of letters/.test(e.message),
    );
  }
});

Deno.test("templates: {cond.<name>.<field>} is known; unknown names and fields are warned with a suggestion", () => {
  const set = compileText([
    "version: 2",
    "rules:",
    "  - id: r",
    "    title: R",
    "    severity: high",
    "    description: >-",
    "      {cond.email.value} {cond.credential.threshold} {cond.res12.30.pool}",
    "      {cond.emial.value} {cond.email.vlaue} {cond.nothing_like_it.value}",
    "    when:",
    "      all:",
    "        - { sae: res12, latent: 10, pool: { max: 8 }, above: 5, name: email }",
    "        - { sae: res12, latent: 20, above: 3, name: credential }",
    "        - { sae: res12, latent: 30, above: 3 }",
    "",
  ].join("\n"));
  const reasons = set.warnings.filter((w) => w.code === "unknown-placeholder").map((w) => w.reason);
  assert.deepEqual(reasons, [
    "description: unknown placeholder {cond.emial.value} (left as is); expected a condition of " +
    "the rule (email, credential, res12.30) (did you mean {cond.email.value}?)",
    "description: unknown placeholder {cond.email.vlaue} (left as is); expected a condition " +
    "field: value threshold op pool signal label held (did you mean {cond.email.value}?)",
    "description: unknown placeholder {cond.nothing_like_it.value} (left as is); expected a " +
    "condition of the rule (email, credential, res12.30)",
  ]);
});
