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
 *
 * @module
 */
import { stableId } from "../alert.ts";
import type {
  Condition,
  ExceptionDef,
  MacroDef,
  PolicyFileDef,
  Pool,
  RuleDef,
  Scope,
  SignalRef,
  SignalTest,
  SourceRef,
  SteerAction,
  ValueSet,
} from "./ast.ts";
import { isTemplateField, templatePlaceholders } from "./template.ts";

/** What compile knows about an encoder the monitor loads. */
export interface SignalInfo {
  /** An SAE (sparse latents, ≥ 0) or a linear probe (a dense score per token, any sign). */
  kind: "sae" | "probe";
  /** Latents (SAE) or scores (probe) per token. */
  dSae: number;
  /** Human labels by latent index, for `label:` signals and for alerts. */
  labels?: ReadonlyMap<number, string>;
}

/** Machine-readable kinds of compile problems. */
export type ProblemCode =
  | "duplicate-rule"
  | "duplicate-macro"
  | "duplicate-list"
  | "unknown-encoder"
  | "wrong-encoder-kind"
  | "latent-range"
  | "unknown-label"
  | "ambiguous-label"
  | "no-labels"
  | "unknown-macro"
  | "macro-cycle"
  | "unknown-list"
  | "list-item"
  | "threshold"
  | "pool"
  | "fires-every-token"
  | "no-trigger"
  | "empty-condition"
  | "steer"
  | "throttle";

/** Machine-readable kinds of lint warnings. */
export type WarningCode =
  | "unused-macro"
  | "unused-list"
  | "disabled-rule"
  | "never-fires"
  | "always-holds"
  | "no-actions"
  | "unknown-placeholder"
  | "steer-throttled";

/** One problem (or warning) with where it was written. */
export interface PolicyProblem<C extends string = ProblemCode> {
  source: SourceRef;
  /** The rule it is about, when it is about one. */
  rule?: string;
  reason: string;
  code: C;
}

/** A lint warning: the set compiles, but something is likely not what the author meant. */
export type PolicyWarning = PolicyProblem<WarningCode>;

function where(s: SourceRef): string {
  return `${s.file}:${s.line}${s.col !== undefined ? `:${s.col}` : ""}`;
}

/**
 * Format a problem or warning as one `file:line[:col]: [rule 'id': ]reason` line.
 *
 * @example
 * ```ts
 * formatProblem({ source: { file: "p.yaml", line: 3 }, rule: "pi", reason: "bad", code: "threshold" });
 * // "p.yaml:3: rule 'pi': bad"
 * ```
 */
export function formatProblem(p: PolicyProblem<string>): string {
  return `${where(p.source)}: ${p.rule !== undefined ? `rule '${p.rule}': ` : ""}${p.reason}`;
}

/**
 * Policy files do not compile against the monitor's encoders. The message is
 * one {@linkcode formatProblem} line per problem; `problems` keeps every one
 * (compile does not stop at the first), `warnings` the lint warnings found too.
 *
 * @example
 * ```ts
 * try { compilePolicySet(files, signals); } catch (e) {
 *   if (e instanceof PolicyCompileError) for (const p of e.problems) console.error(formatProblem(p));
 * }
 * ```
 */
export class PolicyCompileError extends TypeError {
  override name = "PolicyCompileError";
  readonly problems: readonly PolicyProblem[];
  readonly warnings: readonly PolicyWarning[];
  constructor(problems: readonly PolicyProblem[], warnings: readonly PolicyWarning[] = []) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
    this.warnings = warnings;
  }
}

/** One pooled signal a rule reads (tests on the same signal and pooling share it). */
export interface CompiledTest {
  readonly encoder: string;
  readonly kind: "latent" | "probe";
  readonly index: number;
  readonly label?: string;
  readonly pool: Pool;
  /** Whether the signal being present on a token makes the rule evaluate there. */
  readonly trigger: boolean;
}

/** A condition with names resolved; leaves point into the rule's `tests`. */
export type CompiledCondition =
  | {
    kind: "test";
    test: number;
    op: "above" | "below";
    threshold: number;
    source: SourceRef;
  }
  | { kind: "all" | "any"; of: CompiledCondition[]; source: SourceRef }
  | { kind: "not"; of: CompiledCondition; source: SourceRef };

/**
 * What a condition reads while the engine evaluates it at one token: the
 * pooled value of each test, and the witness, the first trigger test found
 * holding (for the value and signal an alert reports).
 */
export interface ConditionEnv {
  read(test: number): number;
  witness: number;
  witnessValue: number;
}

/** An exception with its value sets resolved (values compared as strings). */
export interface CompiledException {
  readonly name?: string;
  readonly tenant?: ReadonlySet<string>;
  readonly model?: ReadonlySet<string>;
  readonly metadata?: readonly (readonly [string, ReadonlySet<string>])[];
}

/** A rule ready to run. */
export interface CompiledRule {
  readonly def: RuleDef;
  readonly id: string;
  /** Position in {@linkcode CompiledPolicySet.rules}. */
  readonly index: number;
  /** Hash of the compiled content (not of where it was written): equal hashes, equal behaviour. */
  readonly hash: string;
  readonly scope: Scope;
  readonly tests: readonly CompiledTest[];
  readonly condition: CompiledCondition;
  /** Evaluate the condition; sets `env.witness` when it holds. */
  readonly holds: (env: ConditionEnv) => boolean;
  readonly exceptions: readonly CompiledException[];
  /** Whether the rule raises an alert (it may only steer). */
  readonly alert: boolean;
  readonly steer: readonly SteerAction[];
  /** `meta.<key>` names its description and dedup key read. */
  readonly metaKeys: readonly string[];
}

/** Rules watching one encoder, indexed by latent (CSR: entries of latent `i` are `offsets[i]..offsets[i+1]`). */
export interface EncoderIndex {
  readonly kind: "sae" | "probe";
  /** Sorted latents (scores) any test reads. */
  readonly watched: Uint32Array;
  /** `[dSae + 1]` */
  readonly offsets: Uint32Array;
  /** Per entry: the rule's index in `rules`. */
  readonly rule: Uint32Array;
  /** Per entry: the test's index in that rule's `tests`. */
  readonly test: Uint32Array;
}

/** Policy files compiled against a monitor's encoders. */
export interface CompiledPolicySet {
  /** Enabled rules, in file order. */
  readonly rules: readonly CompiledRule[];
  /** Encoders any enabled rule reads, sorted. */
  readonly encoderIds: readonly string[];
  readonly warnings: readonly PolicyWarning[];
  /** Hash of every rule definition, for alerts: equal versions, equal behaviour. */
  readonly version: string;
  readonly index: ReadonlyMap<string, EncoderIndex>;
  /** Sorted latents of `encoderId` any test of an enabled rule reads (a fresh copy; empty for an unknown id). */
  watchedLatents(encoderId: string): Uint32Array;
}

/** JSON with object keys sorted and `source` fields left out: the content of a definition. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v instanceof Set) return canonical([...v].sort());
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => k !== "source" && o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

interface Ctx {
  signals: ReadonlyMap<string, SignalInfo>;
  macros: Map<string, MacroDef>;
  lists: Map<string, { def: { name: string; items: (string | number)[]; source: SourceRef } }>;
  usedMacros: Set<string>;
  usedLists: Set<string>;
  problems: PolicyProblem[];
  labelIndex: Map<string, Map<string, number[]>>;
  /** Macro loops reported, as their sorted names. */
  cycles: Set<string>;
}

/** A rule's pooled signals while its condition is resolved. */
class TestTable {
  readonly tests: CompiledTest[] = [];
  readonly #byKey = new Map<string, number>();
  slot(t: Omit<CompiledTest, "trigger">, trigger: boolean): number {
    const key = canonical({ e: t.encoder, k: t.kind, i: t.index, p: t.pool });
    let i = this.#byKey.get(key);
    if (i === undefined) {
      i = this.tests.length;
      this.#byKey.set(key, i);
      this.tests.push({ ...t, trigger });
    } else if (trigger && !this.tests[i].trigger) {
      this.tests[i] = { ...this.tests[i], trigger };
    }
    return i;
  }
}

function labelsOf(ctx: Ctx, encoder: string, info: SignalInfo): Map<string, number[]> {
  let m = ctx.labelIndex.get(encoder);
  if (!m) {
    m = new Map();
    for (const [i, label] of info.labels ?? []) {
      const k = label.trim().toLowerCase();
      const list = m.get(k);
      if (list) list.push(i);
      else m.set(k, [i]);
    }
    ctx.labelIndex.set(encoder, m);
  }
  return m;
}

/** Resolve a list used where integers (latent indices) are expected. */
function latentList(
  ctx: Ctx,
  name: string,
  source: SourceRef,
  rule: string | undefined,
  report: boolean,
): number[] | null {
  const list = ctx.lists.get(name);
  ctx.usedLists.add(name);
  if (!list) {
    if (report) {
      ctx.problems.push({
        source,
        rule,
        code: "unknown-list",
        reason: `unknown list '${name}'; expected one of the lists defined (${
          [...ctx.lists.keys()].join(", ") || "none"
        })`,
      });
    }
    return null;
  }
  return list.def.items as number[];
}

interface Resolving {
  rule: string | undefined;
  /** Report problems (false while inlining a macro, whose problems are reported once, on its own). */
  report: boolean;
  table: TestTable;
  /** Macros being expanded, for cycle detection. */
  stack: string[];
}

function problem(ctx: Ctx, r: Resolving, source: SourceRef, code: ProblemCode, reason: string) {
  if (r.report) ctx.problems.push({ source, rule: r.rule, code, reason });
}

/** Resolve a signal reference to concrete `(encoder, index)` pairs; `null` after a problem. */
function resolveSignal(
  ctx: Ctx,
  r: Resolving,
  sig: SignalRef,
  source: SourceRef,
): { encoder: string; kind: "latent" | "probe"; index: number; label?: string }[] | null {
  const encoder = sig.kind === "probe" ? sig.probe : sig.sae;
  const info = ctx.signals.get(encoder);
  const want = sig.kind === "probe" ? "probe" : "sae";
  if (!info) {
    const known = [...ctx.signals].filter(([, i]) => i.kind === want).map(([k]) => k);
    problem(
      ctx,
      r,
      source,
      "unknown-encoder",
      `unknown ${want === "sae" ? "SAE" : "probe"} '${encoder}'; expected one the monitor loads (${
        known.join(", ") || "none"
      })`,
    );
    return null;
  }
  if (info.kind !== want) {
    problem(
      ctx,
      r,
      source,
      "wrong-encoder-kind",
      want === "probe"
        ? `expected a probe, found SAE '${encoder}' (read its latents with 'sae:' and 'latent:')`
        : `expected an SAE, found probe '${encoder}' (read its scores with 'probe:')`,
    );
    return null;
  }
  let indices: number[];
  if (sig.kind === "label") {
    if (!info.labels || info.labels.size === 0) {
      problem(
        ctx,
        r,
        source,
        "no-labels",
        `latent label '${sig.label}': SAE '${encoder}' has no labels loaded; expected a latent index`,
      );
      return null;
    }
    const found = labelsOf(ctx, encoder, info).get(sig.label.trim().toLowerCase()) ?? [];
    if (found.length === 0) {
      const needle = sig.label.trim().toLowerCase();
      const near = [...info.labels].filter(([, l]) => l.toLowerCase().includes(needle)).slice(0, 3);
      problem(
        ctx,
        r,
        source,
        "unknown-label",
        `unknown latent label '${sig.label}' for SAE '${encoder}'; expected a loaded label ` +
          `(matched exactly, ignoring case)` +
          (near.length
            ? `; labels containing it: ${near.map(([i, l]) => `${i} '${l}'`).join(", ")}`
            : ""),
      );
      return null;
    }
    if (found.length > 1) {
      problem(
        ctx,
        r,
        source,
        "ambiguous-label",
        `latent label '${sig.label}' of SAE '${encoder}' is ambiguous: expected one latent, found ` +
          `${found.length} (${
            found.map((i) => `${i} '${info.labels!.get(i)}'`).join(", ")
          }); use 'latent:' with an index`,
      );
      return null;
    }
    indices = found;
  } else if (sig.kind === "latents") {
    const list = Array.isArray(sig.indices)
      ? sig.indices
      : latentList(ctx, sig.indices.list, source, r.rule, r.report);
    if (list === null) return null;
    if (list.length === 0) {
      problem(ctx, r, source, "list-item", "expected at least one latent, found an empty list");
      return null;
    }
    indices = list;
  } else {
    indices = [sig.index];
  }
  let ok = true;
  for (const i of indices) {
    if (typeof i !== "number" || !Number.isInteger(i) || i < 0 || i >= info.dSae) {
      ok = false;
      problem(
        ctx,
        r,
        source,
        "latent-range",
        want === "sae"
          ? `expected a latent index in 0..${
            info.dSae - 1
          } (SAE '${encoder}' has d_sae ${info.dSae}), found ${JSON.stringify(i)}`
          : `expected a score index in 0..${
            info.dSae - 1
          } (probe '${encoder}' has ${info.dSae} scores), found ${JSON.stringify(i)}`,
      );
    }
  }
  if (!ok) return null;
  return [...new Set(indices)].map((index) => ({
    encoder,
    kind: want === "sae" ? "latent" as const : "probe" as const,
    index,
    ...(want === "sae" && info.labels?.has(index) ? { label: info.labels.get(index)! } : {}),
  }));
}

function checkPool(ctx: Ctx, r: Resolving, pool: Pool, source: SourceRef): boolean {
  const bad = (reason: string) => {
    problem(ctx, r, source, "pool", reason);
    return false;
  };
  if ("window" in pool && (!Number.isInteger(pool.window) || pool.window < 1)) {
    return bad(`${pool.kind}: expected a window of at least 1 token, found ${pool.window}`);
  }
  if (pool.kind === "ema" && (!Number.isFinite(pool.halfLife) || pool.halfLife <= 0)) {
    return bad(`ema: expected a half-life > 0 tokens, found ${pool.halfLife}`);
  }
  if (pool.kind === "count" && !Number.isFinite(pool.above)) {
    return bad(`count: expected a finite 'above', found ${pool.above}`);
  }
  return true;
}

function resolveTest(
  ctx: Ctx,
  r: Resolving,
  test: SignalTest,
  negated: boolean,
): CompiledCondition | null {
  const signals = resolveSignal(ctx, r, test.signal, test.source);
  let ok = signals !== null;
  ok = checkPool(ctx, r, test.pool, test.source) && ok;
  const isSae = test.signal.kind !== "probe";
  if (!Number.isFinite(test.threshold)) {
    ok = false;
    problem(
      ctx,
      r,
      test.source,
      "threshold",
      `expected a finite threshold, found ${test.threshold}`,
    );
  } else if (isSae && test.op === "above" && test.threshold < 0) {
    ok = false;
    problem(
      ctx,
      r,
      test.source,
      "fires-every-token",
      `expected an 'above' threshold ≥ 0 for an SAE latent, found ${test.threshold}: ` +
        "a latent that is not active reads 0 and pooled latents are never negative, " +
        "so this test would hold on every token",
    );
  }
  if (isSae && test.pool.kind === "count" && test.pool.above < 0) {
    ok = false;
    problem(
      ctx,
      r,
      test.source,
      "fires-every-token",
      `count: expected 'above' ≥ 0 for an SAE latent, found ${test.pool.above}: ` +
        "a latent that is not active reads 0, so every token would count",
    );
  }
  if (!ok || signals === null) return null;
  const trigger = isSae ? (test.op === "above") !== negated : !negated;
  const leaves: CompiledCondition[] = signals.map((s) => ({
    kind: "test",
    test: r.table.slot({ ...s, pool: test.pool }, trigger),
    op: test.op,
    threshold: test.threshold,
    source: test.source,
  }));
  return leaves.length === 1 ? leaves[0] : { kind: "any", of: leaves, source: test.source };
}

function resolveCondition(
  ctx: Ctx,
  r: Resolving,
  c: Condition,
  negated: boolean,
): CompiledCondition | null {
  switch (c.kind) {
    case "test":
      return resolveTest(ctx, r, c, negated);
    case "all":
    case "any": {
      if (c.of.length === 0) {
        problem(
          ctx,
          r,
          c.source,
          "empty-condition",
          `'${c.kind}' expected at least one condition, found none`,
        );
        return null;
      }
      const of = c.of.map((x) => resolveCondition(ctx, r, x, negated));
      if (of.some((x) => x === null)) return null;
      return { kind: c.kind, of: of as CompiledCondition[], source: c.source };
    }
    case "not": {
      const of = resolveCondition(ctx, r, c.of, !negated);
      return of === null ? null : { kind: "not", of, source: c.source };
    }
    case "macro": {
      ctx.usedMacros.add(c.name);
      const m = ctx.macros.get(c.name);
      if (!m) {
        problem(
          ctx,
          r,
          c.source,
          "unknown-macro",
          `unknown macro '${c.name}'; expected one of the macros defined (${
            [...ctx.macros.keys()].join(", ") || "none"
          })`,
        );
        return null;
      }
      const at = r.stack.indexOf(c.name);
      if (at >= 0) {
        // each macro of a loop finds it when checked: report the loop once
        const loop = [...r.stack.slice(at)].sort().join("\u0000");
        if (ctx.cycles.has(loop)) return null;
        ctx.cycles.add(loop);
        // reported even while inlining: a loop is found inside the macros it runs through
        ctx.problems.push({
          source: c.source,
          rule: r.rule,
          code: "macro-cycle",
          reason:
            `macro cycle: ${[...r.stack.slice(at), c.name].join(" → ")}; expected macros to ` +
            "refer to each other without a loop",
        });
        return null;
      }
      // the macro's own problems are reported once, when it is checked on its own
      const inner: Resolving = { ...r, report: false, stack: [...r.stack, c.name] };
      return resolveCondition(ctx, inner, m.condition, negated);
    }
  }
}

/** Why `c` can never hold, or null. */
function never(c: CompiledCondition, tests: readonly CompiledTest[]): string | null {
  switch (c.kind) {
    case "test": {
      const t = tests[c.test];
      if (t.pool.kind === "count") {
        if (c.op === "above" && c.threshold >= t.pool.window) {
          return `count over ${t.pool.window} tokens is never above ${c.threshold}`;
        }
        if (c.op === "below" && c.threshold <= 0) {
          return `a count is never below ${c.threshold}`;
        }
      } else if (t.kind === "latent" && c.op === "below" && c.threshold <= 0) {
        return `a pooled SAE latent is never below ${c.threshold} (an inactive latent reads 0)`;
      }
      return null;
    }
    case "not":
      return always(c.of, tests);
    case "any": {
      const reasons = c.of.map((x) => never(x, tests));
      return reasons.every((x) => x !== null) ? reasons.join("; ") : null;
    }
    case "all": {
      for (const x of c.of) {
        const why = never(x, tests);
        if (why) return why;
      }
      const flat = flattenAll(c);
      for (const x of flat) {
        if (x.kind === "not" && flat.some((y) => canonical(y) === canonical(x.of))) {
          return "'all' holds a condition and its negation";
        }
      }
      const leaves = flat.filter((x) => x.kind === "test");
      for (const a of leaves) {
        for (const b of leaves) {
          if (
            a.test === b.test && a.op === "above" && b.op === "below" && b.threshold <= a.threshold
          ) {
            return `'all' needs one pooled value above ${a.threshold} and below ${b.threshold}`;
          }
        }
      }
      return null;
    }
  }
}

/** Why `c` always holds, or null. */
function always(c: CompiledCondition, tests: readonly CompiledTest[]): string | null {
  switch (c.kind) {
    case "test": {
      const t = tests[c.test];
      if (t.pool.kind === "count") {
        if (c.op === "below" && c.threshold > t.pool.window) {
          return `count over ${t.pool.window} tokens is always below ${c.threshold}`;
        }
        if (c.op === "above" && c.threshold < 0) return `a count is always above ${c.threshold}`;
      }
      return null;
    }
    case "not":
      return never(c.of, tests);
    case "all": {
      const reasons = c.of.map((x) => always(x, tests));
      return reasons.every((x) => x !== null) ? reasons.join("; ") : null;
    }
    case "any": {
      for (const x of c.of) {
        const why = always(x, tests);
        if (why) return why;
      }
      for (const x of c.of) {
        if (x.kind === "not" && c.of.some((y) => canonical(y) === canonical(x.of))) {
          return "'any' holds a condition and its negation";
        }
      }
      return null;
    }
  }
}

function flattenAll(c: CompiledCondition): CompiledCondition[] {
  return c.kind === "all" ? c.of.flatMap(flattenAll) : [c];
}

/**
 * The condition as a closure. `negated` is static, so leaves know whether
 * they can be the witness (a trigger test outside a `not`); `all`/`any`
 * restore the witness when a branch fails, so it always names a test of the
 * branch that made the rule hold.
 */
function compileEval(
  c: CompiledCondition,
  tests: readonly CompiledTest[],
  negated: boolean,
): (env: ConditionEnv) => boolean {
  switch (c.kind) {
    case "test": {
      const { test, threshold } = c;
      const witness = !negated && tests[test].trigger;
      if (c.op === "above") {
        return witness
          ? (env) => {
            const v = env.read(test);
            if (!(v > threshold)) return false;
            if (env.witness < 0) {
              env.witness = test;
              env.witnessValue = v;
            }
            return true;
          }
          : (env) => env.read(test) > threshold;
      }
      return witness
        ? (env) => {
          const v = env.read(test);
          if (!(v < threshold)) return false;
          if (env.witness < 0) {
            env.witness = test;
            env.witnessValue = v;
          }
          return true;
        }
        : (env) => env.read(test) < threshold;
    }
    case "not": {
      const inner = compileEval(c.of, tests, !negated);
      return (env) => {
        const w = env.witness;
        const held = inner(env);
        env.witness = w;
        return !held;
      };
    }
    case "all": {
      const of = c.of.map((x) => compileEval(x, tests, negated));
      return (env) => {
        const w = env.witness;
        for (const f of of) {
          if (!f(env)) {
            env.witness = w;
            return false;
          }
        }
        return true;
      };
    }
    case "any": {
      const of = c.of.map((x) => compileEval(x, tests, negated));
      return (env) => {
        const w = env.witness;
        for (const f of of) {
          if (f(env)) return true;
          env.witness = w;
        }
        return false;
      };
    }
  }
}

function resolveValues(
  ctx: Ctx,
  set: ValueSet,
  source: SourceRef,
  rule: string,
): ReadonlySet<string> | null {
  if (Array.isArray(set)) return new Set(set.map(String));
  ctx.usedLists.add(set.list);
  const list = ctx.lists.get(set.list);
  if (!list) {
    ctx.problems.push({
      source,
      rule,
      code: "unknown-list",
      reason: `unknown list '${set.list}'; expected one of the lists defined (${
        [...ctx.lists.keys()].join(", ") || "none"
      })`,
    });
    return null;
  }
  return new Set(list.def.items.map(String));
}

function resolveException(ctx: Ctx, e: ExceptionDef, rule: string): CompiledException {
  const out: {
    name?: string;
    tenant?: ReadonlySet<string>;
    model?: ReadonlySet<string>;
    metadata?: [string, ReadonlySet<string>][];
  } = {};
  if (e.name !== undefined) out.name = e.name;
  if (e.tenant) out.tenant = resolveValues(ctx, e.tenant, e.source, rule) ?? new Set();
  if (e.model) out.model = resolveValues(ctx, e.model, e.source, rule) ?? new Set();
  if (e.metadata) {
    out.metadata = Object.entries(e.metadata).map((
      [k, v],
    ) => [k, resolveValues(ctx, v, e.source, rule) ?? new Set()]);
  }
  return out;
}

function checkSteer(ctx: Ctx, s: SteerAction, rule: RuleDef): void {
  const bad = (reason: string) =>
    ctx.problems.push({ source: rule.source, rule: rule.id, code: "steer", reason });
  const latent = (sae: string, i: number, what: string) => {
    const info = ctx.signals.get(sae);
    if (!info || info.kind !== "sae") {
      bad(`${what}: expected an SAE the monitor loads, found '${sae}'`);
    } else if (!Number.isInteger(i) || i < 0 || i >= info.dSae) {
      bad(`${what}: expected a latent index in 0..${info.dSae - 1} of SAE '${sae}', found ${i}`);
    }
  };
  const direction = (d: { sae: string; latent: number } | { vector: number[] }, what: string) => {
    if ("vector" in d) {
      if (d.vector.length === 0 || !d.vector.every(Number.isFinite)) {
        bad(`${what}: expected a non-empty vector of finite numbers`);
      }
    } else latent(d.sae, d.latent, what);
  };
  switch (s.kind) {
    case "clamp":
      latent(s.sae, s.latent, "steer clamp");
      if (!Number.isFinite(s.value)) bad(`steer clamp: expected a finite value, found ${s.value}`);
      break;
    case "ablate":
      latent(s.sae, s.latent, "steer ablate");
      break;
    case "add":
      direction(s.direction, "steer add");
      if (!Number.isFinite(s.scale)) bad(`steer add: expected a finite scale, found ${s.scale}`);
      break;
    case "cap":
      direction(s.direction, "steer cap");
      if (!Number.isFinite(s.max)) bad(`steer cap: expected a finite max, found ${s.max}`);
      break;
    case "abort":
      break;
  }
}

function checkThrottle(ctx: Ctx, rule: RuleDef): void {
  const { suppress, rateLimit } = rule.throttle;
  const bad = (reason: string) =>
    ctx.problems.push({ source: rule.source, rule: rule.id, code: "throttle", reason });
  if (suppress.kind === "tokens" && (!Number.isInteger(suppress.n) || suppress.n < 1)) {
    bad(`suppress: expected a whole number of tokens ≥ 1, found ${suppress.n}`);
  }
  if (suppress.kind === "seconds" && !(Number.isFinite(suppress.s) && suppress.s > 0)) {
    bad(`suppress: expected seconds > 0, found ${suppress.s}`);
  }
  if (rateLimit) {
    if (!Number.isInteger(rateLimit.alerts) || rateLimit.alerts < 1) {
      bad(`rate limit: expected a whole number of alerts ≥ 1, found ${rateLimit.alerts}`);
    }
    if (!(Number.isFinite(rateLimit.seconds) && rateLimit.seconds > 0)) {
      bad(`rate limit: expected seconds > 0, found ${rateLimit.seconds}`);
    }
  }
}

/**
 * Compile policy files against the encoders a monitor loads (`signals`: id →
 * kind, width, labels). Throws {@linkcode PolicyCompileError} with every
 * problem found; see the module doc for what is checked and decided.
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
): CompiledPolicySet {
  const ctx: Ctx = {
    signals,
    macros: new Map(),
    lists: new Map(),
    usedMacros: new Set(),
    usedLists: new Set(),
    problems: [],
    labelIndex: new Map(),
    cycles: new Set(),
  };
  const warnings: PolicyWarning[] = [];

  for (const f of files) {
    for (const l of f.lists) {
      const first = ctx.lists.get(l.name);
      if (first) {
        ctx.problems.push({
          source: l.source,
          code: "duplicate-list",
          reason: `duplicate list '${l.name}': expected names to be unique across files, ` +
            `found it already defined at ${where(first.def.source)}`,
        });
      } else ctx.lists.set(l.name, { def: l });
    }
    for (const m of f.macros) {
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

  // each macro is checked once on its own, so its problems are reported once, at its lines
  for (const m of ctx.macros.values()) {
    const r: Resolving = { rule: undefined, report: true, table: new TestTable(), stack: [m.name] };
    resolveCondition(ctx, r, m.condition, false);
  }
  // use counts from rules only: a macro only another unused macro uses is unused too
  ctx.usedMacros.clear();
  ctx.usedLists.clear();

  const byId = new Map<string, RuleDef>();
  const compiled: { def: RuleDef; rule: Omit<CompiledRule, "index"> | null }[] = [];
  const hashes: string[] = [];
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
      compiled.push({ def, rule: compileRule(ctx, def, warnings) });
    }
  }

  for (const m of ctx.macros.values()) {
    if (!ctx.usedMacros.has(m.name)) {
      warnings.push({
        source: m.source,
        code: "unused-macro",
        reason: `macro '${m.name}' is defined but no rule uses it`,
      });
    }
  }
  for (const l of ctx.lists.values()) {
    if (!ctx.usedLists.has(l.def.name)) {
      warnings.push({
        source: l.def.source,
        code: "unused-list",
        reason: `list '${l.def.name}' is defined but nothing uses it`,
      });
    }
  }
  if (ctx.problems.length > 0) throw new PolicyCompileError(ctx.problems, warnings);

  const rules: CompiledRule[] = [];
  for (const { rule } of compiled) {
    hashes.push(rule!.hash);
    if (rule!.def.enabled) rules.push({ ...rule!, index: rules.length });
  }
  const index = buildIndex(rules, signals);
  return {
    rules,
    encoderIds: [...index.keys()].sort(),
    warnings,
    version: stableId(hashes.join(",")),
    index,
    watchedLatents: (id) => index.get(id)?.watched.slice() ?? new Uint32Array(0),
  };
}

function compileRule(
  ctx: Ctx,
  def: RuleDef,
  warnings: PolicyWarning[],
): Omit<CompiledRule, "index"> | null {
  const before = ctx.problems.length;
  const table = new TestTable();
  const condition = resolveCondition(
    ctx,
    { rule: def.id, report: true, table, stack: [] },
    def.condition,
    false,
  );
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

  const metaKeys: string[] = [];
  for (
    const [field, tpl] of [["description", def.description], ["dedup key", def.throttle.dedupKey]]
  ) {
    for (const name of templatePlaceholders(tpl ?? "")) {
      if (!isTemplateField(name)) {
        warnings.push({
          source: def.source,
          rule: def.id,
          code: "unknown-placeholder",
          reason: `${field}: unknown placeholder {${name}} (left as is); expected one of ` +
            "{rule} {title} {severity} {model} {hook} {request_id} {tenant} {value} {signal} " +
            "{label} {tokens} {text} {meta.<key>}",
        });
      } else if (name.startsWith("meta.") && !metaKeys.includes(name.slice(5))) {
        metaKeys.push(name.slice(5));
      }
    }
  }
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
  const nope = never(condition, tests);
  if (nope) {
    warnings.push({
      source: def.condition.source,
      rule: def.id,
      code: "never-fires",
      reason: `condition can never hold: ${nope}`,
    });
  } else {
    const yes = always(condition, tests);
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
    holds: compileEval(condition, tests, false),
    exceptions,
    alert: def.actions.some((a) => a.kind === "alert"),
    steer,
    metaKeys,
  };
}

function buildIndex(
  rules: readonly CompiledRule[],
  signals: ReadonlyMap<string, SignalInfo>,
): Map<string, EncoderIndex> {
  const refs = new Map<string, [latent: number, rule: number, test: number][]>();
  for (const r of rules) {
    r.tests.forEach((t, i) => {
      let list = refs.get(t.encoder);
      if (!list) refs.set(t.encoder, list = []);
      list.push([t.index, r.index, i]);
    });
  }
  const out = new Map<string, EncoderIndex>();
  for (const [encoder, list] of refs) {
    const info = signals.get(encoder)!;
    // counting sort by latent keeps rule order within a latent
    const offsets = new Uint32Array(info.dSae + 1);
    for (const [l] of list) offsets[l + 1]++;
    for (let i = 0; i < info.dSae; i++) offsets[i + 1] += offsets[i];
    const fill = offsets.slice(0, info.dSae);
    const rule = new Uint32Array(list.length);
    const test = new Uint32Array(list.length);
    for (const [l, r, t] of list) {
      const at = fill[l]++;
      rule[at] = r;
      test[at] = t;
    }
    const watched = Uint32Array.from(new Set(list.map(([l]) => l))).sort();
    out.set(encoder, { kind: info.kind, watched, offsets, rule, test });
  }
  return out;
}
