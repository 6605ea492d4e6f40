/**
 * Policy files, v0: a YAML mapping `{version: 1, rules: [...]}` whose rules
 * say "alert when latent L of SAE S is strictly above T". Validated strictly
 * (unknown keys are errors); every problem is reported as `file:line:col:
 * reason`. The format is documented in `docs/policies.md`.
 *
 * @module
 */
import { z } from "zod";
import { type PolicyRule, SEVERITIES, type Severity } from "../core/policy.ts";
import {
  duplicateIds,
  expectMessage,
  loadYamlSource,
  parseYamlSource,
  validateYaml,
  type YamlSource,
} from "./yaml_source.ts";

/** Rule ids: lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const RULE_ID_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;

/** SAE ids as named in a monitor config. */
export const SAE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const NEGATIVE_WHY = "a latent that is not active reads as 0, so a negative threshold would " +
  "fire on every token (v0 rules only fire when a latent rises above a threshold)";

const LATENT = "an integer latent index ≥ 0";
const SCORE = "an integer score index ≥ 0 (0 for a probe with one direction)";

/** The zod schema of a v0 policy file (YAML keys as written). */
export const PolicyFileSchema = z.strictObject({
  version: z.literal(1, {
    error: expectMessage("version: 1 (the policy file format this latentwatch reads)"),
  }),
  rules: z.array(z.strictObject({
    id: z.string().regex(RULE_ID_PATTERN, {
      error: expectMessage(
        "a rule id of lowercase letters, digits, '.', '_' or '-' ([a-z0-9][a-z0-9._-]*)",
      ),
    }),
    title: z.string().trim().min(1),
    severity: z.enum(SEVERITIES as [Severity, ...Severity[]]),
    description: z.string().optional(),
    when: z.strictObject({
      sae: z.string().regex(SAE_ID_PATTERN, {
        error: expectMessage("an SAE id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)"),
      }).optional(),
      latent: z.int({ error: expectMessage(LATENT) }).min(0, { error: expectMessage(LATENT) })
        .optional(),
      probe: z.string().regex(SAE_ID_PATTERN, {
        error: expectMessage("a probe id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)"),
      }).optional(),
      score: z.int({ error: expectMessage(SCORE) }).min(0, { error: expectMessage(SCORE) })
        .optional(),
      above: z.number({ error: expectMessage("a number") }),
    }).check((ctx) => {
      const w = ctx.value;
      const issue = (path: string, message: string) =>
        ctx.issues.push({ code: "custom", input: w, path: [path], message });
      if (w.probe === undefined) {
        if (w.sae === undefined) {
          issue(
            "sae",
            "expected either 'sae' with 'latent' (an SAE latent) or 'probe' (a probe score)",
          );
        } else if (w.latent === undefined) issue("latent", `expected ${LATENT} with 'sae'`);
        if (w.score !== undefined) issue("score", "expected 'score' only with 'probe'");
        if (w.above < 0) issue("above", `expected a number ≥ 0, found ${w.above}; ${NEGATIVE_WHY}`);
      } else {
        if (w.sae !== undefined) issue("sae", "expected 'sae' or 'probe', found both");
        if (w.latent !== undefined) issue("latent", "expected 'score' (not 'latent') with 'probe'");
      }
    }),
  })),
});

/** A v0 policy file as written, after validation. */
export type PolicyFile = z.output<typeof PolicyFileSchema>;

/**
 * Validate a parsed YAML source as a v0 policy file and return its rules,
 * each with `source.line` at its list item. Throws {@linkcode ConfigError}
 * with every problem.
 *
 * @example
 * ```ts
 * const rules = policyRulesFromSource(parseYamlSource(text, "p.yaml"));
 * ```
 */
export function policyRulesFromSource(src: YamlSource): PolicyRule[] {
  const parsed = validateYaml(PolicyFileSchema, src, duplicateIds(src, "rules", "rule"));
  return parsed.rules.map((r, i) => {
    const rule: PolicyRule = {
      id: r.id,
      title: r.title,
      severity: r.severity,
      sae: (r.when.probe ?? r.when.sae)!,
      latent: (r.when.probe !== undefined ? r.when.score ?? 0 : r.when.latent)!,
      above: r.when.above,
      ...(r.when.probe !== undefined ? { signal: "probe" as const } : {}),
      source: { file: src.file, line: src.locate(["rules", i]).line },
    };
    if (r.description !== undefined) rule.description = r.description;
    return rule;
  });
}

/**
 * Parse and validate the text of a v0 policy file. `file` is used in
 * positions and in each rule's `source`.
 *
 * @example
 * ```ts
 * const rules = parsePolicyFile(
 *   "version: 1\nrules:\n  - id: pi\n    title: Prompt injection\n    severity: high\n" +
 *     "    when: {sae: demo-res, latent: 0, above: 2.0}\n",
 *   "p.yaml",
 * );
 * rules[0].source; // { file: "p.yaml", line: 3 }
 * ```
 */
export function parsePolicyFile(text: string, file: string): PolicyRule[] {
  return policyRulesFromSource(parseYamlSource(text, file));
}

/**
 * Read, parse and validate a v0 policy file. Throws {@linkcode ConfigError}
 * (an unreadable file is reported at `path:1:1`).
 *
 * @example
 * ```ts
 * const rules = await loadPolicyFile("policies/demo.yaml");
 * ```
 */
export async function loadPolicyFile(path: string): Promise<PolicyRule[]> {
  return policyRulesFromSource(await loadYamlSource(path));
}
