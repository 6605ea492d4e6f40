/**
 * The JSON Schema of policy files (`docs/policy.schema.json`), generated from
 * the zod schemas the parser validates with, so editors and latentwatch
 * agree on what a file may say. Run it to rewrite the committed file:
 *
 * ```sh
 * deno run -A src/config/policy_schema.ts            # writes docs/policy.schema.json
 * deno run -A src/config/policy_schema.ts --check    # exit 1 if the file is stale
 * ```
 *
 * The schema checks structure, types, patterns and ranges. The cross-key rules
 * zod checks in code (`sae` or `probe`, `above` or `below`, one of `latent`,
 * `label`, `latents`) and everything compile checks (names, SAEs, latents in
 * range) are left to `latentwatch policy lint`.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { PolicyDocumentSchema } from "./policy_file_schema.ts";

/** Where the generated schema is committed. */
export const POLICY_SCHEMA_PATH = fileURLToPath(
  new URL("../../docs/policy.schema.json", import.meta.url),
);

/**
 * The JSON Schema (draft 2020-12) of a policy file, as pretty-printed JSON
 * with a trailing newline.
 *
 * @example
 * ```ts
 * const schema = JSON.parse(policyJsonSchema());
 * schema.$schema; // "https://json-schema.org/draft/2020-12/schema"
 * ```
 */
export function policyJsonSchema(): string {
  // io "input": what a person writes (keys with defaults are optional)
  const schema = z.toJSONSchema(PolicyDocumentSchema, { io: "input", target: "draft-2020-12" });
  const out = {
    $schema: schema.$schema,
    $id: "https://latentwatch.dev/schemas/policy.schema.json",
    title: "latentwatch policy file",
    description: "Rules over SAE latents and probe scores (docs/policies.md). " +
      "Check files with `latentwatch policy lint`.",
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "$schema")),
  };
  return JSON.stringify(out, null, 2) + "\n";
}

if (import.meta.main) {
  const text = policyJsonSchema();
  if (Deno.args.includes("--check")) {
    let committed = "";
    try {
      committed = await Deno.readTextFile(POLICY_SCHEMA_PATH);
    } catch { /* missing: stale */ }
    if (committed !== text) {
      console.error(`${POLICY_SCHEMA_PATH} is stale; run: deno run -A src/config/policy_schema.ts`);
      Deno.exit(1);
    }
    console.log(`${POLICY_SCHEMA_PATH}: up to date`);
  } else {
    await Deno.writeTextFile(POLICY_SCHEMA_PATH, text);
    console.log(`wrote ${POLICY_SCHEMA_PATH}`);
  }
}
