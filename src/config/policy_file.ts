/**
 * Policy files: YAML → validated → {@linkcode PolicyFileDef}, the language
 * as data (`src/core/policy/ast.ts`) that `compilePolicySet` compiles.
 *
 * Two versions are read:
 * - **v2** (`version: 2`): lists, macros and rules whose `when` is a
 *   condition tree (signal tests with pooling, `all`/`any`/`not`, macro
 *   references), with scope, exceptions, actions (alert, steer), suppression,
 *   dedup keys, rate limits, tags and `enabled`.
 * - **v1** (`version: 1`): rules whose `when` is one `{sae, latent, above}`
 *   or `{probe, score?, above}` test. A v1 file is read as a v2 file whose
 *   condition is that one test with per-token pooling, scope `both`, an alert
 *   action and no suppression (an alert on every frame where it holds, as v1
 *   did).
 *
 * This module reads them: YAML → validated (`policy_file_schema.ts`) →
 * converted (`policy_file_ast.ts`), every problem reported at once as
 * `file:line:col: reason`, saying what was expected and what was found. The
 * format is documented in `docs/policies.md`.
 *
 * @module
 */
import type { PolicyFileDef } from "../core/policy/ast.ts";
import type { PolicyLimits } from "../core/policy/limits.ts";
import { ConfigError, type ConfigIssue } from "./errors.ts";
import { policyFileV1Ast, policyFileV2Ast } from "./policy_file_ast.ts";
import { atlasTagProblem, PolicyFileSchema, PolicyFileV2Schema } from "./policy_file_schema.ts";
import {
  describeValue,
  duplicateIds,
  isMapping,
  loadYamlSource,
  parseYamlSource,
  validateYaml,
  type YamlPath,
  type YamlSource,
} from "./yaml_source.ts";

/** A parsed policy file and the warnings found while parsing it (malformed ATLAS tags). */
export interface ParsedPolicyFile {
  def: PolicyFileDef;
  warnings: ConfigIssue[];
}
function versionIssue(src: YamlSource): ConfigIssue | undefined {
  const root = src.value;
  if (!isMapping(root)) {
    return {
      file: src.file,
      ...src.locate([]),
      reason: `expected a mapping with 'version' and 'rules', found ${
        root === null ? "an empty file" : describeValue(root)
      }`,
    };
  }
  const expected = "version: 1 or 2 (the policy file formats this latentwatch reads)";
  if (!("version" in root)) {
    return {
      file: src.file,
      ...src.locate([]),
      reason: `missing required key 'version' (${expected})`,
    };
  }
  if (root.version !== 1 && root.version !== 2) {
    return {
      file: src.file,
      ...src.locate(["version"]),
      reason: `expected ${expected}, found ${describeValue(root.version)}`,
    };
  }
  return undefined;
}

/**
 * Validate a parsed YAML source as a policy file (v1 or v2) and convert it
 * to a {@linkcode PolicyFileDef}, with the warnings parsing found. Every
 * `source` carries the line and column of what it describes (a rule: its
 * list item; a condition: its mapping). Throws {@linkcode ConfigError} with
 * every problem.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * const text = "version: 2\nrules: []\n";
 * const { def, warnings } = policyFileDefFromSource(parseYamlSource(text, "p.yaml"));
 * ```
 */
export function policyFileDefFromSource(src: YamlSource): ParsedPolicyFile {
  const bad = versionIssue(src);
  if (bad) throw new ConfigError([bad]);
  const file = src.file;
  if ((src.value as { version: number }).version === 1) {
    const parsed = validateYaml(PolicyFileSchema, src, duplicateIds(src, "rules", "rule"));
    return { def: policyFileV1Ast(parsed, src), warnings: [] };
  }
  const parsed = validateYaml(PolicyFileV2Schema, src, duplicateIds(src, "rules", "rule"));
  const def = policyFileV2Ast(parsed, src);
  const warnings: ConfigIssue[] = [];
  parsed.rules.forEach((r, i) =>
    r.tags.forEach((tag, j) => {
      const reason = atlasTagProblem(tag);
      if (reason) warnings.push({ file, ...src.locate(["rules", i, "tags", j]), reason });
    })
  );
  return { def, warnings };
}

/**
 * Parse and validate the text of a policy file (v1 or v2) into a
 * {@linkcode PolicyFileDef}. `file` is used in positions and sources.
 * Throws {@linkcode ConfigError} listing every problem.
 *
 * @example
 * ```ts
 * const def = parsePolicyFileDef(
 *   "version: 2\nrules:\n  - id: pi\n    title: Prompt injection\n    severity: high\n" +
 *     "    when: {sae: res, latent: 7, pool: {max: 8}, above: 2.5}\n",
 *   "p.yaml",
 * );
 * def.rules[0].condition; // { kind: "test", pool: { kind: "max", window: 8 }, threshold: 2.5, ... }
 * ```
 */
export function parsePolicyFileDef(text: string, file: string): PolicyFileDef {
  return policyFileDefFromSource(parseYamlSource(text, file)).def;
}

/**
 * Read, parse and validate a policy file (v1 or v2), with its parse
 * warnings. Throws {@linkcode ConfigError} (an unreadable file is reported
 * at `path:1:1`; so is one beyond `limits.fileBytes`, and nesting beyond
 * `limits.depth` at its place; defaults in `src/core/policy/limits.ts`).
 *
 * @example
 * ```ts
 * const { def, warnings } = await readPolicyFile("policies/demo.yaml");
 * ```
 */
export async function readPolicyFile(
  path: string,
  limits: Partial<Pick<PolicyLimits, "depth" | "fileBytes">> = {},
): Promise<ParsedPolicyFile> {
  return policyFileDefFromSource(
    await loadYamlSource(path, { depth: limits.depth, bytes: limits.fileBytes }),
  );
}

/**
 * Read, parse and validate a policy file (v1 or v2) into a
 * {@linkcode PolicyFileDef}. Throws {@linkcode ConfigError}.
 *
 * @example
 * ```ts
 * const def = await loadPolicyFileDef("policies/demo.yaml");
 * def.rules.map((r) => r.id); // then compilePolicySet([def], signals)
 * ```
 */
export async function loadPolicyFileDef(path: string): Promise<PolicyFileDef> {
  return (await readPolicyFile(path)).def;
}

/**
 * What of an invalid policy file can still be checked: the file without the
 * rules that have schema errors (or repeat an earlier rule's id), converted
 * as {@linkcode policyFileDefFromSource} would, with positions still those of
 * the original file. `undefined` when an error lies outside the rules (the
 * version, a macro, a list, a top-level key) or nothing is left to check, so
 * that lint can report a file's schema errors and the semantic errors of
 * its valid rules in one run.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * const src = parseYamlSource(
 *   "version: 2\nrules:\n  - id: bad\n    title: T\n    severity: nope\n" +
 *     "    when: {sae: res, latent: 1, above: 1}\n  - id: ok\n    title: T\n" +
 *     "    severity: high\n    when: {sae: res, latent: 2, above: 1}\n",
 *   "p.yaml",
 * );
 * validRulesOf(src)?.def.rules.map((r) => r.id); // ["ok"]
 * ```
 */
export function validRulesOf(src: YamlSource): ParsedPolicyFile | undefined {
  if (versionIssue(src)) return undefined;
  const root = src.value as Record<string, unknown>;
  const rules = root.rules;
  if (!Array.isArray(rules)) return undefined;
  const schema = root.version === 1 ? PolicyFileSchema : PolicyFileV2Schema;
  const result = schema.safeParse(root);
  if (result.success) return undefined;
  const bad = new Set<number>();
  for (const issue of result.error.issues) {
    const [key, i] = issue.path;
    if (key !== "rules" || typeof i !== "number") return undefined;
    bad.add(i);
  }
  const seen = new Set<string>();
  rules.forEach((r, i) => {
    const id = (r as { id?: unknown } | null)?.id;
    if (typeof id !== "string") return;
    if (seen.has(id)) bad.add(i);
    seen.add(id);
  });
  const kept = rules.map((_, i) => i).filter((i) => !bad.has(i));
  if (kept.length === 0) return undefined;
  const value = { ...root, rules: kept.map((i) => rules[i]) };
  const shifted: YamlSource = {
    file: src.file,
    value,
    locate: (path: YamlPath, at) =>
      src.locate(
        path[0] === "rules" && typeof path[1] === "number"
          ? ["rules", kept[path[1]], ...path.slice(2)]
          : path,
        at,
      ),
  };
  try {
    return policyFileDefFromSource(shifted);
  } catch (err) {
    if (err instanceof ConfigError) return undefined;
    throw err;
  }
}
