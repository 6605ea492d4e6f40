/**
 * Each condition of a rule valued per token of one request: the leaf
 * tests of its condition tree, the signal each reads pooled as the engine
 * pools it, and whether the test held there. What the workbench preview
 * draws and what `policy test` prints for a failing case, so an author
 * sees why a rule did (not) fire. Pure.
 *
 * @module
 */
import type { CompiledCondition, CompiledRule, CompiledTest } from "./compiled.ts";
import { createPoolState } from "./pool.ts";

/** A test leaf of a compiled condition (a threshold on one pooled signal). */
export type TestLeaf = Extract<CompiledCondition, { kind: "test" }>;

/**
 * Every test leaf of a compiled condition, depth first.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import { conditionLeaves } from "./condition_values.ts";
 * declare const rule: CompiledRule;
 * conditionLeaves(rule.condition).map((l) => l.threshold);
 * ```
 */
export function conditionLeaves(c: CompiledCondition, out: TestLeaf[] = []): TestLeaf[] {
  if (c.kind === "test") out.push(c);
  else if (c.kind === "not") conditionLeaves(c.of, out);
  else for (const x of c.of) conditionLeaves(x, out);
  return out;
}

/**
 * `raw` (a signal's value per token from the request's first token)
 * pooled as the engine pools test `t`: a latent's value is pushed where it
 * is active (a probe's on every token); a per-token test reads 0 where its
 * latent is inactive.
 *
 * @example
 * ```ts
 * import { pooledValues } from "./condition_values.ts";
 * const t = { encoder: "res", kind: "latent", index: 0, pool: { kind: "max", window: 2 }, trigger: true } as const;
 * pooledValues(t, [0, 3, 0, 0]); // [0, 3, 3, 0]
 * ```
 */
export function pooledValues(t: CompiledTest, raw: readonly number[]): number[] {
  const state = createPoolState(t.pool);
  return raw.map((x, pos) => {
    const present = x !== 0 || t.kind === "probe";
    if (present) state.push(pos, x, 0);
    return !present && t.pool.kind === "token" ? 0 : state.read(pos, 0);
  });
}

/**
 * What a test reads, for people: `demo-res latent 0 "prompt injection"`,
 * `refusal score 0`.
 *
 * @example
 * ```ts
 * import { signalName } from "./condition_values.ts";
 * signalName({ encoder: "res", kind: "latent", index: 4, label: "email", pool: { kind: "token" }, trigger: true });
 * // 'res latent 4 "email"'
 * ```
 */
export function signalName(t: CompiledTest): string {
  const what = t.kind === "probe" ? "score" : t.family ? "family of latent" : "latent";
  return `${t.encoder} ${what} ${t.index}${t.label ? ` "${t.label}"` : ""}`;
}

/**
 * How a condition is named on screen: its name (when given), where it is
 * written (`file:line:col`) and what it reads.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import { conditionLabel, conditionLeaves } from "./condition_values.ts";
 * declare const rule: CompiledRule;
 * const leaf = conditionLeaves(rule.condition)[0];
 * conditionLabel(leaf, rule.tests[leaf.test]); // 'p.yaml:7:11 res latent 2'
 * conditionLabel(leaf, rule.tests[leaf.test], "email"); // 'email (p.yaml:7:11 res latent 2)'
 * ```
 */
export function conditionLabel(leaf: TestLeaf, t: CompiledTest, name?: string): string {
  const s = leaf.source;
  const where = `${s.file}:${s.line}${s.col !== undefined ? `:${s.col}` : ""} ${signalName(t)}`;
  return name === undefined ? where : `${name} (${where})`;
}

/** Whether `value` passes a threshold test (strictly, as the engine compares). */
export function testHolds(op: "above" | "below", threshold: number, value: number): boolean {
  return op === "above" ? value > threshold : value < threshold;
}

/** One condition (test leaf) of a rule, valued per token of one request. */
export interface ConditionValues {
  leaf: TestLeaf;
  test: CompiledTest;
  /** The condition's name (`name:` or its default, see `condition_names.ts`). */
  name: string;
  /** {@linkcode conditionLabel} of the leaf, with its name. */
  label: string;
  op: "above" | "below";
  threshold: number;
  /** The signal's own value per token (before pooling). */
  raw: readonly number[];
  /** The value the test compares with `threshold`, per token. */
  pooled: number[];
  /** Whether the test held, per token. */
  held: boolean[];
}

/**
 * Every test leaf of `rule` valued over one request of `length` tokens;
 * `rawOf` gives a test's signal value per token from the first.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import { ruleConditionValues } from "./condition_values.ts";
 * declare const rule: CompiledRule;
 * const rows = ruleConditionValues(rule, () => [0, 5, 0]);
 * rows.map((c) => c.held); // [[false, true, false]] for `above: 2` on a per-token test
 * ```
 */
export function ruleConditionValues(
  rule: CompiledRule,
  rawOf: (t: CompiledTest) => readonly number[],
): ConditionValues[] {
  return conditionLeaves(rule.condition).map((leaf) => {
    const test = rule.tests[leaf.test];
    const raw = rawOf(test);
    const pooled = pooledValues(test, raw);
    const name = rule.conditions[leaf.cond].name;
    return {
      leaf,
      test,
      name,
      label: conditionLabel(leaf, test, name),
      op: leaf.op,
      threshold: leaf.threshold,
      raw,
      pooled,
      held: pooled.map((v) => testHolds(leaf.op, leaf.threshold, v)),
    };
  });
}

/**
 * Whether the whole condition holds at token `pos`, given each leaf's
 * {@linkcode ConditionValues} (in {@linkcode conditionLeaves} order).
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import { conditionHoldsAt, ruleConditionValues } from "./condition_values.ts";
 * declare const rule: CompiledRule;
 * const values = ruleConditionValues(rule, () => [0, 5]);
 * conditionHoldsAt(rule.condition, values, 1);
 * ```
 */
export function conditionHoldsAt(
  c: CompiledCondition,
  values: readonly ConditionValues[],
  pos: number,
): boolean {
  const leafHeld = new Map(values.map((v) => [v.leaf, v.held[pos]]));
  const walk = (x: CompiledCondition): boolean =>
    x.kind === "test"
      ? leafHeld.get(x) ?? false
      : x.kind === "not"
      ? !walk(x.of)
      : x.kind === "all"
      ? x.of.every(walk)
      : x.of.some(walk);
  return walk(c);
}
