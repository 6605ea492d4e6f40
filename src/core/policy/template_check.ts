/**
 * Compile's check of a rule's description and dedup-key templates: unknown
 * placeholders (a field, a condition name, a condition field) are warnings
 * with the expected names and a close match, and the `meta.<key>` keys they
 * read are collected for the engine. Pure.
 *
 * @module
 */
import type { RuleDef } from "./ast.ts";
import type { RuleCondition } from "./compiled.ts";
import type { PolicyWarning } from "./problems.ts";
import {
  CONDITION_FIELDS,
  conditionPlaceholder,
  isTemplateField,
  templatePlaceholders,
} from "./template.ts";
import { someNames } from "./context.ts";
import { boundedEditDistance } from "./signals.ts";

const FIELDS_TEXT = "{rule} {title} {severity} {model} {hook} {request_id} {tenant} {value} " +
  "{signal} {label} {tokens} {text} {meta.<key>} {cond.<name>.<field>}";

/** The name among `names` closest to `name`, when within 2 edits (a third of a long name). */
function closest(name: string, names: readonly string[]): string | undefined {
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const n of names) {
    const d = boundedEditDistance(name.toLowerCase(), n.toLowerCase(), limit);
    if (d < bestD) [best, bestD] = [n, d];
  }
  return best;
}

/** Why `name` is not a template field of a rule with `conditions` (its condition names). */
function unknownReason(name: string, conditions: readonly string[]): string {
  const c = conditionPlaceholder(name);
  if (c === undefined) return `expected one of ${FIELDS_TEXT}`;
  if (!conditions.includes(c.condition)) {
    const close = closest(c.condition, conditions);
    return `expected a condition of the rule (${someNames(conditions)})` +
      (close !== undefined ? ` (did you mean {cond.${close}.${c.field}}?)` : "");
  }
  const close = closest(c.field, CONDITION_FIELDS);
  return `expected a condition field: ${CONDITION_FIELDS.join(" ")}` +
    (close !== undefined ? ` (did you mean {cond.${c.condition}.${close}}?)` : "");
}

/**
 * Warn (`unknown-placeholder`) on each placeholder of `def`'s description and
 * dedup key that is not a field; returns the `meta.<key>` keys they read.
 *
 * @example
 * ```ts
 * import type { RuleDef } from "./ast.ts";
 * import type { PolicyWarning } from "./problems.ts";
 * declare const def: RuleDef;
 * const warnings: PolicyWarning[] = [];
 * const metaKeys = checkTemplate(def, [], warnings);
 * ```
 */
export function checkTemplate(
  def: RuleDef,
  conditions: readonly RuleCondition[],
  warnings: PolicyWarning[],
): string[] {
  const names = conditions.map((c) => c.name);
  const metaKeys: string[] = [];
  for (
    const [field, tpl] of [["description", def.description], ["dedup key", def.throttle.dedupKey]]
  ) {
    for (const name of templatePlaceholders(tpl ?? "")) {
      if (!isTemplateField(name, names)) {
        warnings.push({
          source: def.source,
          rule: def.id,
          code: "unknown-placeholder",
          reason: `${field}: unknown placeholder {${name}} (left as is); ` +
            unknownReason(name, names),
        });
      } else if (name.startsWith("meta.") && !metaKeys.includes(name.slice(5))) {
        metaKeys.push(name.slice(5));
      }
    }
  }
  return metaKeys;
}
