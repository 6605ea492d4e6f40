import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { parsePolicyFileDef } from "./policy_file.ts";

const rule = (extra: string) =>
  [
    "version: 2", //                         1
    "rules:", //                             2
    "  - id: r", //                          3
    "    title: R", //                       4
    "    severity: low", //                  5
    "    when: {sae: s, latent: 1, above: 2}", // 6
    extra, //                                7
  ].join("\n");

Deno.test("policy redact: a rule's redact reaches the AST; absent is none (no key)", () => {
  assert.equal(parsePolicyFileDef(rule("    redact: hash"), "p.yaml").rules[0].redact, "hash");
  assert.equal(parsePolicyFileDef(rule("    redact: tokens"), "p.yaml").rules[0].redact, "tokens");
  assert.equal(parsePolicyFileDef(rule("    redact: none"), "p.yaml").rules[0].redact, "none");
  assert.ok(!("redact" in parsePolicyFileDef(rule(""), "p.yaml").rules[0]));
});

Deno.test("policy redact: an unknown mode is named at line:col", () => {
  assert.throws(() => parsePolicyFileDef(rule("    redact: secret"), "p.yaml"), (err) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.issues.map((i) => `${i.line}:${i.col}: ${i.reason}`), [
      '7:13: expected one of none, hash, tokens, found the string "secret"',
    ]);
    return true;
  });
});
