/**
 * Names of a rule's conditions (its leaf signal tests), which alerts list
 * and templates read as `{cond.<name>.<field>}`. Pure.
 *
 * - A test's `name:` is its name; a `latents` test named `n` gives each of
 *   its latents the name `n.<latent>`.
 * - An unnamed test is named after its latent's label, slugged (lower case,
 *   each run of characters other than `a-z` and `0-9` made one `_`, at most
 *   40 characters): `e-mail address` → `e_mail_address`; without a label,
 *   `<sae>.<latent>` or `<probe>.<score>` (`res12.4012`). A family test's
 *   default name is its concept's followed by `_family`.
 * - Names are unique within a rule: two tests written with the same name are
 *   an error (`duplicate-condition-name`, at the second one's line and
 *   column); a default name already taken gets `_2`, `_3`, … (first free).
 *   A macro's test used twice in one rule is one condition.
 *
 * @module
 */
import type { SourceRef } from "./ast.ts";
import type { RuleCondition } from "./compiled.ts";
import type { ResolvedSignal } from "./context.ts";
import type { PolicyProblem } from "./problems.ts";
import { where } from "./problems.ts";

/** A leaf as the condition builder numbered it, before it is named. */
export interface ConditionLeaf {
  signal: ResolvedSignal;
  test: number;
  op: "above" | "below";
  threshold: number;
  source: SourceRef;
  /** Written name (`name:`), if any. */
  name?: string;
}

const SLUG_MAX = 40;

/**
 * The name an unnamed condition on `signal` gets before it is made unique:
 * its label slugged, else `<encoder>.<index>`.
 *
 * @example
 * ```ts
 * defaultConditionName({ encoder: "res12", kind: "latent", index: 7, label: "E-mail address" });
 * // "e_mail_address"
 * defaultConditionName({ encoder: "res12", kind: "latent", index: 7 }); // "res12.7"
 * ```
 */
export function defaultConditionName(signal: ResolvedSignal): string {
  const slug = (signal.label ?? "").toLowerCase().replace(/[^a-z0-9]+/g, "_")
    .slice(0, SLUG_MAX + 1).replace(/^_+|_+$/g, "").slice(0, SLUG_MAX).replace(/_+$/, "");
  const base = slug.length > 0 ? slug : `${signal.encoder}.${signal.index}`;
  return signal.family ? `${base}_family` : base;
}

/**
 * Name a rule's leaves in order: written names first (a name written twice
 * is reported in `problems`), then default names made unique.
 *
 * @example
 * ```ts
 * const source = { file: "p.yaml", line: 4, col: 9 };
 * const signal = { encoder: "res", kind: "latent" as const, index: 3 };
 * nameConditions([
 *   { signal, test: 0, op: "above", threshold: 1, source },
 *   { signal, test: 1, op: "above", threshold: 2, source },
 * ], "r", []).map((c) => c.name); // ["res.3", "res.3_2"]
 * ```
 */
export function nameConditions(
  leaves: readonly ConditionLeaf[],
  rule: string,
  problems: PolicyProblem[],
): RuleCondition[] {
  const taken = new Map<string, SourceRef>();
  for (const l of leaves) {
    if (l.name === undefined) continue;
    const first = taken.get(l.name);
    if (first) {
      problems.push({
        source: l.source,
        rule,
        code: "duplicate-condition-name",
        reason: `duplicate condition name '${l.name}': expected names unique within a rule, ` +
          `found it already used at ${where(first)}`,
      });
    } else taken.set(l.name, l.source);
  }
  return leaves.map((l) => {
    let name = l.name;
    if (name === undefined) {
      const base = defaultConditionName(l.signal);
      name = base;
      for (let n = 2; taken.has(name); n++) name = `${base}_${n}`;
      taken.set(name, l.source);
    }
    return { name, test: l.test, op: l.op, threshold: l.threshold, source: l.source };
  });
}
