/**
 * Policy compilation: parsed policy files ({@linkcode PolicyFileDef}) checked
 * against the SAEs and probes a monitor loads, names resolved, and every rule
 * turned once into flat data and a closure the engine runs per token. Pure.
 *
 * What compile decides:
 * - **Names are global across files**: a macro or list defined in one file
 *   can be used in another; a name defined twice is an error, as is a rule id.
 * - **Latents by label** match a loaded label exactly, ignoring case and
 *   surrounding spaces; several matches is an error that lists them.
 * - **`latents` tests** (a list of latents) become an `any` of one test per latent.
 * - **Condition names** (`condition_names.ts`): each leaf test of a rule is a
 *   named condition (`name:`, else a default from its label or signal, made
 *   unique); a name written twice in one rule is an error. Templates may read
 *   `{cond.<name>.<field>}`; an unknown name or field is a warning with a
 *   close match (`template_check.ts`).
 * - **Triggers.** A rule is evaluated on a token only when one of its trigger
 *   tests' signals is present on that token, which is what makes inactive
 *   rules free. A trigger is a test that can only hold when its signal is
 *   high: an SAE test that is `above` outside a `not` (or `below` inside
 *   one), or any probe test outside a `not` (probes are present on every
 *   token). Other tests only guard. A rule without a trigger is an error: with
 *   SAE latents it would hold on every token where the latent is quiet.
 * - **Tests that would fire on every token** are errors: SAE `above` with a
 *   negative threshold (every pooled latent value is ≥ 0, an inactive latent
 *   reads 0), and SAE `count` with a negative `above` (every token counts).
 * - **Warnings** (the set still compiles): unused macros and lists, disabled
 *   rules, rules without actions, unknown template placeholders, and
 *   conditions that can never hold (a test and its negation in one `all`,
 *   `x > a` and `x < b` with `b ≤ a` on one pooled signal, a `count` above its
 *   window, an SAE test below 0 or less) or always hold.
 * - **Limits** (`limits.ts`): macros, list items, latent indices, and each
 *   condition's expanded depth and the set's expanded size are bounded, and
 *   a macro is resolved once (`resolve.ts`), so compile time is linear in
 *   the size of the set with its macros expanded.
 *
 * @module
 */
import { stableId } from "../alert.ts";
import type { PolicyFileDef, RuleDef, SteerAction } from "./ast.ts";
import { type PolicyLimits, policyLimits } from "./limits.ts";
import { canonical } from "./canonical.ts";
import { ConditionBuilder } from "./condition_builder.ts";
import type { Ctx } from "./context.ts";
import { resolveMacros, usedByRules } from "./macros.ts";
import { resolveCondition, withinLimits, writtenDepth } from "./resolve.ts";
import { checkSteer, checkThrottle } from "./actions.ts";
import { always, never } from "./analysis.ts";
import { compileEval } from "./closures.ts";
import type { CompiledCondition, CompiledPolicySet, CompiledRule, SignalInfo } from "./compiled.ts";
import { resolveException } from "./exceptions.ts";
import { nameConditions } from "./condition_names.ts";
import { checkTemplate } from "./template_check.ts";
import { PolicyCompileError, type PolicyWarning, where } from "./problems.ts";
import { policySet } from "./transfer.ts";

export type {
  CompiledCondition,
  CompiledException,
  CompiledPolicySet,
  CompiledRule,
  CompiledTest,
  ConditionEnv,
  SignalInfo,
} from "./compiled.ts";
export {
  DENSE_INDEX_LATENTS,
  type EncoderIndex,
  INDEX_EMPTY,
  INDEX_HASH,
  indexEntries,
} from "./encoder_index.ts";
export {
  formatProblem,
  PolicyCompileError,
  type PolicyProblem,
  type PolicyWarning,
  type ProblemCode,
  type WarningCode,
} from "./problems.ts";
export { type CompiledPolicyData, hydratePolicySet, policySetData } from "./transfer.ts";

/** Options of {@linkcode compilePolicySet}. */
export interface CompileOptions {
  /** Limits on the set (`limits.ts`); defaults apply to what is not given. */
  limits?: Partial<PolicyLimits>;
}

/**
 * Compile policy files against the encoders a monitor loads (`signals`: id →
 * kind, width, labels). Throws {@linkcode PolicyCompileError} with every
 * problem found; see the module doc for what is checked and decided. Time is
 * linear in the size of the set with its macros expanded, which the limits
 * bound (`opts.limits`, default {@linkcode DEFAULT_POLICY_LIMITS}); the
 * per-latent index the engine uses is built on first use, so compiling
 * allocates nothing by a latent index.
 *
 * @example
 * ```ts
 * const set = compilePolicySet([{
 *   file: "p.yaml", version: 2, macros: [], lists: [],
 *   rules: [{
 *     id: "pi", title: "Prompt injection", severity: "high", tags: [], scope: "both",
 *     condition: { kind: "test", signal: { kind: "latent", sae: "res", index: 7 },
 *       pool: { kind: "max", window: 4 }, op: "above", threshold: 2, source: { file: "p.yaml", line: 9 } },
 *     exceptions: [], actions: [{ kind: "alert" }],
 *     throttle: { suppress: { kind: "request" }, dedupKey: "{request_id}" },
 *     enabled: true, source: { file: "p.yaml", line: 3 },
 *   }],
 * }], new Map([["res", { kind: "sae", dSae: 16 }]]));
 * set.watchedLatents("res"); // Uint32Array [7]
 * ```
 */
export function compilePolicySet(
  files: PolicyFileDef[],
  signals: ReadonlyMap<string, SignalInfo>,
  opts: CompileOptions = {},
): CompiledPolicySet {
  const ctx: Ctx = {
    signals,
    limits: policyLimits(opts.limits),
    macros: new Map(),
    lists: new Map(),
    usedMacros: new Set(),
    usedLists: new Set(),
    problems: [],
    labelIndex: new Map(),
    resolved: new Map(),
    refs: new Map(),
    valueSets: new Map(),
  };
  const warnings: PolicyWarning[] = [];

  let macroCount = 0;
  for (const f of files) {
    for (const l of f.lists) {
      const first = ctx.lists.get(l.name);
      if (first) {
        ctx.problems.push({
          source: l.source,
          code: "duplicate-list",
          reason: `duplicate list '${l.name}': expected names to be unique across files, ` +
            `found it already defined at ${where(first.source)}`,
        });
      } else ctx.lists.set(l.name, l);
      if (l.items.length > ctx.limits.listItems) {
        ctx.problems.push({
          source: l.source,
          code: "limit",
          reason: `list '${l.name}': expected at most ${ctx.limits.listItems} items (limit ` +
            `listItems), found ${l.items.length}`,
        });
      }
    }
    for (const m of f.macros) {
      if (++macroCount === ctx.limits.macros + 1) {
        const total = files.reduce((n, f) => n + f.macros.length, 0);
        // refused before any resolution: the set is too large to check further
        throw new PolicyCompileError([{
          source: m.source,
          code: "limit",
          reason: `expected at most ${ctx.limits.macros} macros across the policy files (limit ` +
            `macros), found ${total}`,
        }]);
      }
      const first = ctx.macros.get(m.name);
      if (first) {
        ctx.problems.push({
          source: m.source,
          code: "duplicate-macro",
          reason: `duplicate macro '${m.name}': expected names to be unique across files, ` +
            `found it already defined at ${where(first.source)}`,
        });
      } else ctx.macros.set(m.name, m);
    }
  }

  // each macro is resolved once, on its own, so its problems are reported once, at its lines
  resolveMacros(ctx);
  // use counts from rules only: a macro only another unused macro uses is unused too
  ctx.usedMacros.clear();
  ctx.usedLists.clear();

  const byId = new Map<string, RuleDef>();
  const compiled: { def: RuleDef; rule: Omit<CompiledRule, "index"> | null }[] = [];
  const hashes: string[] = [];
  const budget = { nodesLeft: ctx.limits.conditionNodes };
  for (const f of files) {
    for (const def of f.rules) {
      const first = byId.get(def.id);
      if (first) {
        ctx.problems.push({
          source: def.source,
          rule: def.id,
          code: "duplicate-rule",
          reason: `duplicate rule id '${def.id}': expected ids to be unique across files, ` +
            `found it already defined at ${where(first.source)}`,
        });
      } else byId.set(def.id, def);
      compiled.push({ def, rule: compileRule(ctx, def, warnings, budget) });
    }
  }

  const used = usedByRules(ctx);
  for (const m of ctx.macros.values()) {
    if (!used.macros.has(m.name)) {
      warnings.push({
        source: m.source,
        code: "unused-macro",
        reason: `macro '${m.name}' is defined but no rule uses it`,
      });
    }
  }
  for (const l of ctx.lists.values()) {
    if (!used.lists.has(l.name)) {
      warnings.push({
        source: l.source,
        code: "unused-list",
        reason: `list '${l.name}' is defined but nothing uses it`,
      });
    }
  }
  if (ctx.problems.length > 0) throw new PolicyCompileError(ctx.problems, warnings);

  const rules: CompiledRule[] = [];
  for (const { rule } of compiled) {
    hashes.push(rule!.hash);
    if (rule!.def.enabled) rules.push({ ...rule!, index: rules.length });
  }
  return policySet(rules, warnings, stableId(hashes.join(",")), signals);
}

function compileRule(
  ctx: Ctx,
  def: RuleDef,
  warnings: PolicyWarning[],
  budget: { nodesLeft: number },
): Omit<CompiledRule, "index"> | null {
  const before = ctx.problems.length;
  const builder = new ConditionBuilder();
  const table = builder.table;
  let condition: CompiledCondition | null = null;
  const what = "when:";
  const depth = writtenDepth(def.condition);
  if (depth > ctx.limits.conditionDepth) {
    withinLimits(ctx, def.id, what, { depth, size: 0 }, def.condition.source);
  } else {
    const res = resolveCondition(ctx, def.id, def.condition);
    if (res !== null && budget.nodesLeft >= 0) {
      if (withinLimits(ctx, def.id, what, res, def.condition.source, budget.nodesLeft)) {
        budget.nodesLeft -= res.size;
        condition = builder.build(res);
      } else if (res.depth <= ctx.limits.conditionDepth) {
        budget.nodesLeft = -1; // reported once: later rules are not built
      }
    }
  }
  const conditions = condition === null ? [] : nameConditions(builder.leaves, def.id, ctx.problems);
  if (condition !== null && !table.tests.some((t) => t.trigger)) {
    ctx.problems.push({
      source: def.condition.source,
      rule: def.id,
      code: "no-trigger",
      reason: "expected at least one test that holds only when its signal is high (an SAE " +
        "'above' test or a probe test, outside 'not'), found only guards: with nothing to " +
        "trigger it the rule would hold on every token where its latents are quiet",
    });
  }
  const exceptions = def.exceptions.map((e) => resolveException(ctx, e, def.id));
  const steer: SteerAction[] = [];
  for (const a of def.actions) {
    if (a.kind === "steer") {
      checkSteer(ctx, a.steer, def);
      steer.push(a.steer);
    }
  }
  checkThrottle(ctx, def);

  const metaKeys = checkTemplate(def, conditions, warnings);
  if (!def.enabled) {
    warnings.push({
      source: def.source,
      rule: def.id,
      code: "disabled-rule",
      reason: "rule is disabled (enabled: false) and does not run",
    });
  }
  if (steer.length > 0 && (def.throttle.dedupKey !== "{request_id}" || def.throttle.rateLimit)) {
    // steering goes with firings: a firing held back for another request's sake
    // leaves this request unsteered
    warnings.push({
      source: def.source,
      rule: def.id,
      code: "steer-throttled",
      reason:
        `rule steers but ${
          def.throttle.rateLimit ? "has a rate limit" : `dedups by "${def.throttle.dedupKey}"`
        }: a firing held back because of other requests leaves this request unsteered; keep the ` +
        `default dedup key {request_id} and no rate limit on steering rules`,
    });
  }
  if (def.actions.length === 0) {
    warnings.push({
      source: def.source,
      rule: def.id,
      code: "no-actions",
      reason: "rule has no actions: it is evaluated but neither alerts nor steers",
    });
  }
  if (condition === null || ctx.problems.length > before) return null;
  const tests = table.tests;
  const id = (c: CompiledCondition) => builder.id(c);
  const nope = never(condition, tests, id);
  if (nope) {
    warnings.push({
      source: def.condition.source,
      rule: def.id,
      code: "never-fires",
      reason: `condition can never hold: ${nope}`,
    });
  } else {
    const yes = always(condition, tests, id);
    if (yes) {
      warnings.push({
        source: def.condition.source,
        rule: def.id,
        code: "always-holds",
        reason: `condition always holds (it fires on every token that triggers it): ${yes}`,
      });
    }
  }
  const hash = stableId(canonical({
    id: def.id,
    title: def.title,
    severity: def.severity,
    description: def.description,
    tags: def.tags,
    scope: def.scope,
    enabled: def.enabled,
    tests,
    condition,
    conditions: conditions.map((c) => c.name),
    exceptions,
    actions: def.actions,
    throttle: def.throttle,
  }));
  return {
    def,
    id: def.id,
    hash,
    scope: def.scope,
    tests,
    condition,
    conditions,
    holds: compileEval(condition, tests, false),
    exceptions,
    alert: def.actions.some((a) => a.kind === "alert"),
    steer,
    metaKeys,
  };
}
