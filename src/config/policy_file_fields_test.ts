import assert from "node:assert/strict";
import {
  INDEX_LIMIT,
  LatentIndexSchema,
  nameSchema,
  positiveSchema,
  RULE_ID_PATTERN,
  SAE_ID_PATTERN,
  ScalarSchema,
  valueSetSchema,
  wholeSchema,
} from "./policy_file_fields.ts";

/** The messages of a failed parse, joined. */
function messages(
  schema: { safeParse(v: unknown): { success: boolean; error?: unknown } },
  v: unknown,
) {
  const r = schema.safeParse(v);
  assert.equal(r.success, false, `expected ${JSON.stringify(v)} to be refused`);
  return (r.error as { issues: { message: string }[] }).issues.map((i) => i.message).join("; ");
}

Deno.test("policy fields: ids and names follow their patterns", () => {
  for (const ok of ["exfil-1", "a.b_c", "0day"]) assert.ok(RULE_ID_PATTERN.test(ok), ok);
  for (const bad of ["Exfil", "-x", "", "a b"]) assert.ok(!RULE_ID_PATTERN.test(bad), bad);
  for (const ok of ["res12", "Gemma.L12-16k"]) assert.ok(SAE_ID_PATTERN.test(ok), ok);
  assert.ok(!SAE_ID_PATTERN.test("_res"));
  assert.equal(nameSchema("a list").parse("_tenants.v2"), "_tenants.v2");
  assert.match(messages(nameSchema("a list"), "1st"), /a list: a name of letters/);
});

Deno.test("policy fields: a latent index is a whole number below the latentIndex limit", () => {
  assert.equal(LatentIndexSchema.parse(0), 0);
  assert.equal(LatentIndexSchema.parse(INDEX_LIMIT - 1), INDEX_LIMIT - 1);
  assert.match(messages(LatentIndexSchema, INDEX_LIMIT), /below \d+ \(limit latentIndex\)/);
  for (const bad of [-1, 1.5, "3"]) {
    assert.match(messages(LatentIndexSchema, bad), /an integer latent index ≥ 0/);
  }
});

Deno.test("policy fields: numbers, positives and whole numbers say what they expected", () => {
  assert.match(messages(positiveSchema("a half-life > 0"), 0), /a half-life > 0/);
  assert.equal(positiveSchema("x").parse(0.25), 0.25);
  assert.match(messages(wholeSchema("a window ≥ 1", 1), 0), /a window ≥ 1/);
  assert.equal(wholeSchema("a window ≥ 1", 1).parse(8), 8);
});

Deno.test("policy fields: a value set is a literal list or a list's name; scalars are strings or numbers", () => {
  const set = valueSetSchema(LatentIndexSchema, "latent indices");
  assert.deepEqual(set.parse([3, 5]), [3, 5]);
  assert.equal(set.parse("watched"), "watched");
  assert.ok(!set.safeParse({ a: 1 }).success); // the loader words a choice's error
  assert.ok(!set.safeParse([3, -1]).success);
  assert.equal(ScalarSchema.parse("acme"), "acme");
  assert.equal(ScalarSchema.parse(7), 7);
  assert.ok(!ScalarSchema.safeParse(true).success);
});
