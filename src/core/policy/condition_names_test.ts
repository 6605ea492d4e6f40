import assert from "node:assert/strict";
import { defaultConditionName, nameConditions } from "./condition_names.ts";
import type { PolicyProblem } from "./problems.ts";

const sig = (label?: string) => ({
  encoder: "res12",
  kind: "latent" as const,
  index: 7,
  ...(label !== undefined ? { label } : {}),
});

Deno.test("defaultConditionName: label slugged, cut at 40, else <encoder>.<index>", () => {
  assert.equal(defaultConditionName(sig("E-mail address")), "e_mail_address");
  assert.equal(defaultConditionName(sig("  credential / API key ")), "credential_api_key");
  assert.equal(defaultConditionName(sig("日本語")), "res12.7"); // nothing left of the label
  assert.equal(defaultConditionName(sig()), "res12.7");
  assert.equal(defaultConditionName({ encoder: "jb", kind: "probe", index: 1 }), "jb.1");
  // a family test is named after its concept, marked as the family
  const family = { members: [7, 9], weights: [1, 0.8], combine: "sum" as const };
  assert.equal(defaultConditionName({ ...sig("Starts with E"), family }), "starts_with_e_family");
  assert.equal(defaultConditionName({ ...sig(), family }), "res12.7_family");
  // 45 characters: cut to 40, no trailing '_'
  const long = "abcdefghij abcdefghij abcdefghij abcdefghi jklmn";
  assert.equal(defaultConditionName(sig(long)), "abcdefghij_abcdefghij_abcdefghij_abcdefg");
  assert.equal(
    defaultConditionName(sig("abcdefghij abcdefghij abcdefghij abcdef ghi")).length,
    39,
  );
});

Deno.test("nameConditions: written names kept, defaults skip taken names, duplicates reported", () => {
  const at = (line: number) => ({ file: "p.yaml", line, col: 9 });
  const leaf = (line: number, name?: string, label?: string) => ({
    signal: sig(label),
    test: 0,
    op: "above" as const,
    threshold: 1,
    source: at(line),
    ...(name !== undefined ? { name } : {}),
  });
  const problems: PolicyProblem[] = [];
  const names = nameConditions(
    [leaf(1), leaf(2, "res12.7_2"), leaf(3), leaf(4, "x"), leaf(5, "x"), leaf(6, undefined, "X")],
    "r",
    problems,
  ).map((c) => c.name);
  // res12.7, then res12.7_2 is written, so the second default is res12.7_3; label "X" → "x" taken → x_2
  assert.deepEqual(names, ["res12.7", "res12.7_2", "res12.7_3", "x", "x", "x_2"]);
  assert.deepEqual(problems.map((p) => [p.code, p.source.line, p.reason]), [[
    "duplicate-condition-name",
    5,
    "duplicate condition name 'x': expected names unique within a rule, found it already used at p.yaml:4:9",
  ]]);
});
