import assert from "node:assert/strict";
import { parse } from "yaml";
import Ajv from "ajv/dist/2020.js";
import { policyPaths } from "../cli/policy.ts";
import { POLICY_SCHEMA_PATH, policyJsonSchema } from "./policy_schema.ts";

function validator() {
  // deno-lint-ignore no-explicit-any
  const ajv = new (Ajv as any)({ allErrors: true, strict: false });
  return ajv.compile(JSON.parse(policyJsonSchema()));
}

Deno.test("docs/policy.schema.json is the schema generated from the zod schemas", async () => {
  const committed = await Deno.readTextFile(POLICY_SCHEMA_PATH);
  assert.equal(
    committed,
    policyJsonSchema(),
    "stale: run deno run -A src/config/policy_schema.ts",
  );
  assert.equal(JSON.parse(committed).$schema, "https://json-schema.org/draft/2020-12/schema");
});

Deno.test("every policy file in policies/ validates against the schema", async () => {
  const validate = validator();
  const files = await policyPaths([new URL("../../policies", import.meta.url).pathname]);
  assert.ok(files.length >= 3, `found ${files.length} policy files`);
  for (const f of files) {
    const ok = validate(parse(await Deno.readTextFile(f)));
    assert.ok(ok, `${f}: ${JSON.stringify(validate.errors)}`);
  }
});

Deno.test("the schema rejects what the parser rejects structurally", () => {
  const validate = validator();
  const base = { id: "r", title: "R", severity: "low", when: { sae: "s", latent: 1, above: 1 } };
  assert.ok(validate({ version: 2, rules: [base] }));
  assert.ok(validate({ version: 1, rules: [base] }));
  assert.ok(!validate({ version: 3, rules: [] }));
  assert.ok(!validate({ version: 2, rules: [{ ...base, priority: 1 }] }));
  assert.ok(
    !validate({ version: 2, rules: [{ ...base, when: { sae: "s", latent: -1, above: 1 } }] }),
  );
  assert.ok(!validate({ version: 2, rules: [{ ...base, suppress: "forever" }] }));
  assert.ok(
    !validate({
      version: 2,
      rules: [{ ...base, when: { all: [{ sae: "s", latent: 1, pool: { maxx: 2 }, above: 1 }] } }],
    }),
  );
  // v2 keys are not v1 keys
  assert.ok(!validate({ version: 1, rules: [{ ...base, scope: "prompt" }] }));
});
