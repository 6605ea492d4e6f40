/**
 * A rule's conditions as people read them: a pooling in words (`max 8`),
 * and the `{cond.<name>.<field>}` template fields of a firing. Pure.
 *
 * @module
 */
import type { Pool } from "./ast.ts";
import type { CompiledRule } from "./compiled.ts";

/**
 * A pooling in words: `token`, `max 8`, `mean 8`, `rolling_mean_max 8`,
 * `ema half_life 4`, `count 8 above 0.5`.
 *
 * @example
 * ```ts
 * poolText({ kind: "max", window: 8 }); // "max 8"
 * poolText({ kind: "ema", halfLife: 4 }); // "ema half_life 4"
 * ```
 */
export function poolText(pool: Pool): string {
  switch (pool.kind) {
    case "token":
      return "token";
    case "ema":
      return `ema half_life ${pool.halfLife}`;
    case "count":
      return `count ${pool.window} above ${pool.above}`;
    default:
      return `${pool.kind} ${pool.window}`;
  }
}

/**
 * Whether a condition with `op` and `threshold` holds at pooled `value`.
 *
 * @example
 * ```ts
 * conditionHolds({ op: "above", threshold: 3 }, 3.5); // true
 * ```
 */
export function conditionHolds(
  c: { op: "above" | "below"; threshold: number },
  value: number,
): boolean {
  return c.op === "above" ? value > c.threshold : value < c.threshold;
}

/**
 * Add the `{cond.<name>.<field>}` fields of `rule`'s conditions to `fields`,
 * given each condition's pooled value (`values`, in `rule.conditions` order).
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * declare const rule: CompiledRule; // one condition named "email", max 8 above 5
 * const fields: Record<string, string | number | undefined> = {};
 * conditionFields(rule, [5.99], fields);
 * fields["cond.email.value"]; // 5.99
 * ```
 */
export function conditionFields(
  rule: Pick<CompiledRule, "conditions" | "tests">,
  values: readonly number[],
  fields: Record<string, string | number | undefined>,
): void {
  rule.conditions.forEach((c, k) => {
    const test = rule.tests[c.test];
    const at = `cond.${c.name}.`;
    fields[at + "value"] = values[k];
    fields[at + "threshold"] = c.threshold;
    fields[at + "op"] = c.op;
    fields[at + "pool"] = poolText(test.pool);
    fields[at + "signal"] = `${test.encoder}:${test.index}`;
    fields[at + "label"] = test.label;
    fields[at + "held"] = String(conditionHolds(c, values[k]));
  });
}
