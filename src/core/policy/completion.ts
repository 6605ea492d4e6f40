/**
 * Which condition completed a rule: the engine's choice of the condition an
 * alert leads with (its `latent`, `{value}`, `{signal}`, `{label}`). Pure.
 *
 * At a token where the rule holds, the candidates are the conditions that
 * support it holding: leaves outside any `not` that hold, reached through
 * `all` nodes and through the `any` branches that hold, and that can trigger
 * the rule (an SAE `above` test or a probe test; guards never lead). Among
 * them the first by:
 * 1. it did not hold at the rule's previous evaluation in this request (the
 *    engine keeps which leaves held as a bitmask per rule and request; on
 *    the first evaluation none held before; rules of more than
 *    {@linkcode MAX_TRACKED_LEAVES} leaves keep none and skip this step);
 * 2. its signal is present on the token (an active SAE latent; a probe
 *    always is);
 * 3. its window is the shortest (`token` 1, `max`/`mean`/`count`/
 *    `rolling_mean_max` their window, `ema` unbounded);
 * 4. it comes first in the rule (file order, macros expanded where used).
 *
 * A rule that holds only through guards (`any: [A, {not: B}]` with A low)
 * leads with its first condition on a trigger signal.
 *
 * @module
 */
import type { CompiledCondition, CompiledRule, ConditionEnv } from "./compiled.ts";

/** Rules with more leaves than this keep no per-request bitmask (step 1 is skipped). */
export const MAX_TRACKED_LEAVES = 31;

/** A rule's leaves as flat arrays, read per evaluation without allocating. */
export interface LeafTable {
  readonly n: number;
  /** Whether the engine keeps the held-leaves bitmask for this rule (2..31 leaves). */
  readonly tracked: boolean;
  readonly test: Int32Array;
  /** 1 for `above`, 0 for `below`. */
  readonly above: Uint8Array;
  readonly threshold: Float64Array;
  /** Window length in tokens (Infinity for ema). */
  readonly span: Float64Array;
  /** 1 when the leaf can trigger the rule where it is not negated (SAE above, or probe). */
  readonly canLead: Uint8Array;
  /** 1 when the leaf reads a probe (present on every token). */
  readonly probe: Uint8Array;
}

/**
 * The flat leaf table of `rule`.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * declare const rule: CompiledRule;
 * leafTable(rule).n === rule.conditions.length; // true
 * ```
 */
export function leafTable(rule: Pick<CompiledRule, "conditions" | "tests">): LeafTable {
  const n = rule.conditions.length;
  const t: LeafTable = {
    n,
    tracked: n > 1 && n <= MAX_TRACKED_LEAVES,
    test: new Int32Array(n),
    above: new Uint8Array(n),
    threshold: new Float64Array(n),
    span: new Float64Array(n),
    canLead: new Uint8Array(n),
    probe: new Uint8Array(n),
  };
  rule.conditions.forEach((c, k) => {
    const test = rule.tests[c.test];
    const pool = test.pool;
    t.test[k] = c.test;
    t.above[k] = c.op === "above" ? 1 : 0;
    t.threshold[k] = c.threshold;
    t.span[k] = pool.kind === "token" ? 1 : pool.kind === "ema" ? Infinity : pool.window;
    t.probe[k] = test.kind === "probe" ? 1 : 0;
    t.canLead[k] = test.kind === "probe" || c.op === "above" ? 1 : 0;
  });
  return t;
}

/**
 * Bit k set when leaf k holds at the env's token (tracked rules only: at
 * most 31 leaves). No allocation: this runs at every evaluation.
 *
 * @example
 * ```ts
 * import type { ConditionEnv } from "./compiled.ts";
 * declare const table: LeafTable, env: ConditionEnv;
 * const mask = heldMask(table, env);
 * ```
 */
export function heldMask(table: LeafTable, env: ConditionEnv): number {
  const { n, test, above, threshold } = table;
  let mask = 0;
  for (let k = 0; k < n; k++) {
    const v = env.read(test[k]);
    if (above[k] === 1 ? v > threshold[k] : v < threshold[k]) mask |= 1 << k;
  }
  return mask;
}

/** Whether leaf k holds with pooled value `v`. */
function leafHolds(table: LeafTable, k: number, v: number): boolean {
  return table.above[k] === 1 ? v > table.threshold[k] : v < table.threshold[k];
}

/** Whether `c` holds given each leaf's pooled value. */
function holdsWith(c: CompiledCondition, table: LeafTable, values: ArrayLike<number>): boolean {
  switch (c.kind) {
    case "test":
      return leafHolds(table, c.cond, values[c.cond]);
    case "not":
      return !holdsWith(c.of, table, values);
    case "all":
      return c.of.every((x) => holdsWith(x, table, values));
    case "any":
      return c.of.some((x) => holdsWith(x, table, values));
  }
}

/** Mark in `out` the leaves that support `c` holding (c holds). */
function support(
  c: CompiledCondition,
  table: LeafTable,
  values: ArrayLike<number>,
  out: Uint8Array,
): void {
  switch (c.kind) {
    case "test":
      if (leafHolds(table, c.cond, values[c.cond])) out[c.cond] = 1;
      return;
    case "not":
      return; // guards support by being low: they never lead
    case "all":
      for (const x of c.of) support(x, table, values, out);
      return;
    case "any":
      for (const x of c.of) if (holdsWith(x, table, values)) support(x, table, values, out);
      return;
  }
}

/** What {@linkcode completingLeaf} reads about one holding token. */
export interface CompletionInput {
  /** Each leaf's pooled value at the token. */
  values: ArrayLike<number>;
  /** Bitmask of the leaves that held at the previous evaluation, or -1 when not tracked. */
  before: number;
  /** 1 for each leaf whose signal is present on the token. */
  present: Uint8Array;
  /** Scratch of at least `table.n` bytes. */
  scratch: Uint8Array;
}

/**
 * The leaf (index in `rule.conditions`) that completed `rule` at a token
 * where it holds (see the module doc for the order).
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * declare const rule: CompiledRule;
 * const table = leafTable(rule);
 * completingLeaf(rule, table, {
 *   values: [6, 4], before: 0b01, present: Uint8Array.of(0, 1), scratch: new Uint8Array(2),
 * }); // 1 for `all: [A above 5, B above 3]`: B rose since the last evaluation
 * ```
 */
export function completingLeaf(
  rule: Pick<CompiledRule, "condition" | "tests" | "conditions">,
  table: LeafTable,
  input: CompletionInput,
): number {
  const { values, before, present, scratch } = input;
  const mark = scratch;
  for (let k = 0; k < table.n; k++) mark[k] = 0;
  support(rule.condition, table, values, mark);
  let best = -1;
  let bestRose = 0;
  for (let k = 0; k < table.n; k++) {
    if (mark[k] === 0 || table.canLead[k] === 0) continue;
    const rose = before >= 0 && (before & (1 << k)) === 0 ? 1 : 0;
    // strictly better than the best so far: rose, then present, then a shorter window
    if (
      best < 0 || rose > bestRose ||
      (rose === bestRose && (present[k] > present[best] ||
        (present[k] === present[best] && table.span[k] < table.span[best])))
    ) {
      best = k;
      bestRose = rose;
    }
  }
  if (best >= 0) return best;
  const first = rule.conditions.findIndex((c) => rule.tests[c.test].trigger);
  return first >= 0 ? first : 0;
}
