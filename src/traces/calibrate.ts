/**
 * Threshold calibration from benign traffic: for each rule, the pooled
 * values of its (trigger) signal test on every token of benign traces, and
 * the threshold that keeps the false-positive rate at a target, per token
 * and per request.
 *
 * Pooled values come from the engine's own pooling (`core/policy/pool.ts`),
 * fed the same way the engine feeds it, so a calibrated threshold means the
 * same thing to the sidecar.
 *
 * @module
 */
import type { Scope } from "../core/policy/ast.ts";
import type { CompiledCondition, CompiledRule, CompiledTest } from "../core/policy/compile.ts";
import { createPoolState, type PoolState } from "../core/policy/pool.ts";
import { familyValue } from "../core/family.ts";
import type { SparseLatents } from "../core/sae.ts";
import { type LatentTable, rowOf } from "../core/latent_rows.ts";

/** The threshold test a rule is calibrated on: one pooled signal or several under one threshold. */
export interface TriggerTest {
  /** The compiled tests read (several for a `latents` list: the value is their max, or min for `below`). */
  tests: CompiledTest[];
  op: "above" | "below";
  threshold: number;
  source: { file: string; line: number };
  /** The rule's condition is more than this one threshold test. */
  composite: boolean;
  /** What the rate means for a composite rule. */
  note?: string;
}

/**
 * The threshold test a rule is calibrated on: the rule's only test (or its
 * `latents` list, an `any` of one test per latent under one threshold), or,
 * for a composite rule, its trigger: the first test, depth first, that is a
 * trigger (a test whose signal makes the engine evaluate the rule) and not
 * under a `not`. Null when there is none.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "../core/policy/compile.ts";
 * declare const set: CompiledPolicySet;
 * triggerTest(set.rules[0])?.threshold; // 2
 * ```
 */
export function triggerTest(rule: CompiledRule): TriggerTest | null {
  const c = rule.condition;
  const leaf = (l: Extract<CompiledCondition, { kind: "test" }>, composite: boolean) => ({
    tests: [rule.tests[l.test]],
    op: l.op,
    threshold: l.threshold,
    source: l.source,
    composite,
  });
  if (c.kind === "test") return leaf(c, false);
  if (
    c.kind === "any" && c.of.every((x) =>
      x.kind === "test" && x.op === (c.of[0] as typeof x).op &&
      x.threshold === (c.of[0] as typeof x).threshold
    )
  ) {
    const leaves = c.of as Extract<CompiledCondition, { kind: "test" }>[];
    return { ...leaf(leaves[0], false), tests: leaves.map((l) => rule.tests[l.test]) };
  }
  let kind: "all" | "any" | null = null;
  const find = (x: CompiledCondition): Extract<CompiledCondition, { kind: "test" }> | null => {
    if (x.kind === "test") return rule.tests[x.test].trigger ? x : null;
    if (x.kind === "not") return null;
    kind ??= x.kind;
    for (const sub of x.of) {
      const t = find(sub);
      if (t) return t;
    }
    return null;
  };
  const t = find(c);
  if (!t) return null;
  const trig = leaf(t, true);
  const bound = kind === "any"
    ? "a lower bound (its other branches can fire too)"
    : "an upper bound (its other conditions can only make it hold less often)";
  return {
    ...trig,
    note: `composite rule: calibrated its trigger test (${describeTrigger(trig)}, ` +
      `${t.source.file}:${t.source.line}); the other conditions are not applied, so its rates are ${bound}`,
  };
}

/** One threshold test of a rule's condition, as `--condition` names it. */
export interface ConditionRef {
  /** 1-based, depth first over the tests outside a `not`. */
  index: number;
  /** Path in the condition tree: `test` for a lone test, else e.g. `all[1]` or `any[0].all[2]`. */
  name: string;
  /** The condition's name in the rule (`name:` or its default), as alerts list it. */
  condition: string;
  leaf: Extract<CompiledCondition, { kind: "test" }>;
}

/**
 * Every threshold test of a rule that `--condition` can target: the leaves
 * outside a `not`, depth first, numbered from 1 and named by their path.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "../core/policy/compile.ts";
 * declare const rule: CompiledRule; // when: {all: [{sae: res, latent: 0, above: 1}, {sae: res, latent: 1, above: 2}]}
 * conditionRefs(rule).map((c) => c.name); // ["all[0]", "all[1]"]
 * ```
 */
export function conditionRefs(rule: CompiledRule): ConditionRef[] {
  const out: ConditionRef[] = [];
  const walk = (x: CompiledCondition, path: string) => {
    if (x.kind === "test") {
      out.push({
        index: out.length + 1,
        name: path || "test",
        condition: rule.conditions[x.cond].name,
        leaf: x,
      });
    } else if (x.kind !== "not") {
      x.of.forEach((sub, i) => walk(sub, `${path ? path + "." : ""}${x.kind}[${i}]`));
    }
  };
  walk(rule.condition, "");
  return out;
}

/**
 * The test `--condition <sel>` names in `rule` (`sel` a 1-based index, a
 * path or a condition name from {@linkcode conditionRefs}), or a message
 * saying why none.
 */
export function selectCondition(rule: CompiledRule, sel: string): TriggerTest | string {
  const refs = conditionRefs(rule);
  const ref = /^[0-9]+$/.test(sel)
    ? refs[Number(sel) - 1]
    : refs.find((r) => r.name === sel || r.condition === sel);
  if (!ref) {
    return `no condition ${JSON.stringify(sel)} (it has ${
      refs.map((r) => `#${r.index} ${r.condition} at ${r.name}`).join(", ") ||
      "none outside a 'not'"
    })`;
  }
  const l = ref.leaf;
  const composite = refs.length > 1 || rule.condition.kind !== "test";
  const t: TriggerTest = {
    tests: [rule.tests[l.test]],
    op: l.op,
    threshold: l.threshold,
    source: l.source,
    composite,
  };
  if (composite) {
    t.note =
      `condition #${ref.index} ${ref.condition} at ${ref.name} (${
        describeTrigger(t)
      }, ${l.source.file}:${l.source.line}) ` +
      "calibrated alone; the other conditions are not applied" +
      (rule.tests[l.test].trigger ? "" : "; not a trigger: values where its own signal is present");
  }
  return t;
}

/** `demo-res latent 0, max over 8 tokens, above 2` */
export function describeTrigger(t: Pick<TriggerTest, "tests" | "op" | "threshold">): string {
  const first = t.tests[0];
  const signal = first.kind === "probe"
    ? `${first.encoder} score ${first.index}`
    : first.family
    ? `${first.encoder} family of latent ${first.index} (members ${
      first.family.members.join(", ")
    })`
    : `${first.encoder} latent${t.tests.length > 1 ? "s" : ""} ${
      t.tests.map((x) => x.label ? `${x.index} "${x.label}"` : String(x.index)).join(", ")
    }`;
  const p = first.pool;
  const pool = p.kind === "token"
    ? "per token"
    : p.kind === "ema"
    ? `ema half-life ${p.halfLife}`
    : p.kind === "count"
    ? `count above ${p.above} in ${p.window}`
    : p.kind === "rolling_mean_max"
    ? `max rolling mean over ${p.window}`
    : `${p.kind} over ${p.window}`;
  return `${signal}, ${pool}, ${t.op} ${t.threshold}`;
}

/** Value of latent `index` in one token's sparse latents (0 when inactive). */
export function latentValue(row: SparseLatents | undefined, index: number): number {
  if (!row) return 0;
  const idx = row.indices;
  let lo = 0;
  let hi = idx.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = idx[mid];
    if (v === index) return row.values[mid];
    if (v < index) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

/** Whether a token of `phase` is in `scope`, as the engine decides (a frame without a phase counts for every scope). */
export function inScope(scope: Scope, phase: "prefill" | "decode" | undefined): boolean {
  if (scope === "both" || phase === undefined) return true;
  return scope === "prompt" ? phase === "prefill" : phase === "decode";
}

/**
 * The pooled values of one trigger test over a stream of tokens, fed as the
 * engine feeds its pooling: per request, over the rule's in-scope tokens,
 * pushing a latent's value only where it is active (every token for a
 * probe). A value is collected only on tokens where the engine would
 * evaluate the rule on this signal's account (the latent active, any token
 * for a probe): elsewhere the rule cannot fire. Each request's extreme (max
 * for `above`, min for `below`) is kept for per-request rates.
 */
export class PooledCollector {
  readonly trigger: TriggerTest;
  readonly scope: Scope;
  /** Pooled values at the tokens where the rule is evaluated, in arrival order. */
  readonly tokenValues: number[] = [];
  /** Request id → its extreme pooled value (requests where the rule never evaluates are absent). */
  readonly requestValues = new Map<string, number>();
  readonly #states = new Map<string, { start: number; pools: PoolState[] }>();

  constructor(trigger: TriggerTest, scope: Scope) {
    this.trigger = trigger;
    this.scope = scope;
  }

  /** Feed one frame's tokens; `latents` and `firstRow` are the batch's. */
  push(
    requestId: string,
    position: number,
    tokens: number,
    phase: "prefill" | "decode" | undefined,
    latents: ReadonlyMap<string, LatentTable>,
    firstRow: number,
  ): void {
    if (tokens === 0 || !inScope(this.scope, phase)) return;
    const tests = this.trigger.tests;
    let st = this.#states.get(requestId);
    if (!st) {
      st = { start: position, pools: tests.map((t) => createPoolState(t.pool)) };
      this.#states.set(requestId, st);
    }
    const above = this.trigger.op === "above";
    for (let i = 0; i < tokens; i++) {
      const t = position + i;
      let present = false;
      for (let k = 0; k < tests.length; k++) {
        const row = rowOf(latents.get(tests[k].encoder), firstRow + i);
        const family = tests[k].family;
        const x = family ? (row ? familyValue(row, family) : 0) : latentValue(row, tests[k].index);
        const dense = tests[k].kind === "probe";
        if (x !== 0 || dense) {
          st.pools[k].push(t, x, st.start);
          present = true;
        }
      }
      if (!present) continue;
      let v = above ? -Infinity : Infinity;
      for (let k = 0; k < tests.length; k++) {
        const pooled = st.pools[k].read(t, st.start);
        v = above ? Math.max(v, pooled) : Math.min(v, pooled);
      }
      this.tokenValues.push(v);
      const prev = this.requestValues.get(requestId);
      if (prev === undefined || (above ? v > prev : v < prev)) this.requestValues.set(requestId, v);
    }
  }

  /** Forget a request's pooling state (its values stay collected). */
  endRequest(requestId: string): void {
    this.#states.delete(requestId);
  }
}

/** Fraction of `n` items (of which `values` are the finite ones) whose value passes `op threshold`. */
export function passRate(
  values: ArrayLike<number>,
  n: number,
  op: "above" | "below",
  threshold: number,
): number {
  if (n === 0) return 0;
  let k = 0;
  for (let i = 0; i < values.length; i++) {
    if (op === "above" ? values[i] > threshold : values[i] < threshold) k++;
  }
  return k / n;
}

/**
 * The threshold for a target false-positive rate over `n` benign items
 * (`values` holds the in-scope ones; the other `n − values.length` can never
 * fire). With `k = floor(fpr · n)` false positives allowed, the suggestion is
 * the (k+1)-th largest value for `above` (smallest for `below`): strictly
 * above it lie at most k values (exactly k without ties). `null` when fewer
 * than k+1 values exist: no threshold makes the rule fire more than allowed.
 *
 * @example
 * ```ts
 * // values 1..1000, target 1%: k = 10, the 11th largest is 990; 991..1000 lie above
 * suggestThreshold(Array.from({ length: 1000 }, (_, i) => i + 1), 1000, 0.01, "above"); // 990
 * ```
 */
export function suggestThreshold(
  values: ArrayLike<number>,
  n: number,
  fpr: number,
  op: "above" | "below",
): number | null {
  const k = Math.floor(fpr * n + 1e-9);
  if (k + 1 > values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return op === "above" ? sorted[sorted.length - 1 - k] : sorted[k];
}

/**
 * How many benign items (requests, or tokens for a per-token rate) a
 * false-positive target needs: with `n` items the smallest non-zero rate
 * measurable is `1/n`, so `measurable = ceil(1/target)` is the least for the
 * target to be resolvable at all, and `rough = ceil(3/target)` the least for
 * a rough estimate (3 expected false positives at the target).
 *
 * @example
 * ```ts
 * sampleNeeded(0.01); // { measurable: 100, rough: 300 }
 * ```
 */
export function sampleNeeded(target: number): { measurable: number; rough: number } {
  return { measurable: Math.ceil(1 / target - 1e-9), rough: Math.ceil(3 / target - 1e-9) };
}
