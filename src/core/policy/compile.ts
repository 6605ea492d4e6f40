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
 * - **Limits** (`limits.ts`): macros, list items, latent indices, and each
 *   condition's expanded depth and the set's expanded size are bounded, and
 *   a macro is resolved once (`resolve.ts`), so compile time is linear in
 *   the size of the set with its macros expanded.
 *
 * @module
 */
import { stableId } from "../alert.ts";
import { oneLine } from "../one_line.ts";
import type {
  ExceptionDef,
  PolicyFileDef,
  Pool,
  RuleDef,
  Scope,
  SourceRef,
  SteerAction,
  ValueSet,
} from "./ast.ts";
import { type PolicyLimits, policyLimits } from "./limits.ts";
import {
  canonical,
  ConditionBuilder,
  type Ctx,
  namedList,
  resolveCondition,
  resolveMacros,
  usedByRules,
  withinLimits,
  writtenDepth,
} from "./resolve.ts";
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
  | "latent-index"
  | "limit"
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
  // one line, whatever the reason quotes (see oneLine in src/config/errors.ts)
  const text = `${p.rule !== undefined ? `rule '${p.rule}': ` : ""}${p.reason}`;
  return `${where(p.source)}: ${oneLine(text)}`;
}

/**
 * Policy files do not compile against the monitor's encoders. The message is
 * one {@linkcode formatProblem} line per problem; `problems` keeps every one
 * (compile does not stop at the first), `warnings` the lint warnings found too.
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
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

/**
 * Rules watching one encoder, indexed by latent. Sized by the latents the
 * rules read, never by the encoder's width:
 *
 * - entries (`rule`, `test`) sorted by latent, rule order kept within one;
 *   the entries of `watched[g]` are `groups[g]..groups[g + 1]`;
 * - a filter: `filter[latent & filterMask]` is 0 for most latents no rule
 *   reads (at most one byte in 8 is set), so an active latent no rule
 *   watches costs one load, about what a dense `[d_sae + 1]` array cost;
 * - an open-addressing table from latent to group, for what passes the
 *   filter: start at `(Math.imul(latent, INDEX_HASH) >> shift) & mask`,
 *   step by one (`& mask`) until `slotKey` holds the latent (its group is
 *   `slotGroup`) or {@linkcode INDEX_EMPTY} (no rule reads it). At most
 *   half full.
 */
export interface EncoderIndex {
  readonly kind: "sae" | "probe";
  /**
   * When the largest watched latent is below {@linkcode DENSE_INDEX_LATENTS}:
   * `[maxWatched + 2]` CSR offsets by latent (entries of latent `l <
   * length - 1` are `offsets[l]..offsets[l + 1]`), the fastest lookup, at
   * most 4 MiB whatever `d_sae` is. Otherwise null, and the filter and
   * table below are used.
   */
  readonly offsets: Uint32Array | null;
  /** Sorted latents (scores) any test reads. */
  readonly watched: Uint32Array;
  /** `[watched.length + 1]`: CSR offsets of each watched latent's entries. */
  readonly groups: Uint32Array;
  /** Per entry: the rule's index in `rules`. */
  readonly rule: Uint32Array;
  /** Per entry: the test's index in that rule's `tests`. */
  readonly test: Uint32Array;
  /** Hash table: the latent in each slot, or {@linkcode INDEX_EMPTY}. */
  readonly slotKey: Int32Array;
  /** Hash table: the group (index into `watched`) of each slot's latent. */
  readonly slotGroup: Uint32Array;
  /** `slotKey.length - 1` (a power of two less one). */
  readonly mask: number;
  /** `32 - log2(slotKey.length)`. */
  readonly shift: number;
  /** 1 where some watched latent `l` has `l & filterMask` there (at least 4096 bytes, ≤ 1/8 set). */
  readonly filter: Uint8Array;
  /** `filter.length - 1`. */
  readonly filterMask: number;
}

/** Watched latents below this get a dense offsets array (4 MiB at most). */
export const DENSE_INDEX_LATENTS = 2 ** 20;

/**
 * An empty slot of {@linkcode EncoderIndex.slotKey}. Latent indices are
 * below 2^31 (`latentIndex`), so the table holds them as int32: small
 * integers in the engine's hot loop, never doubles.
 */
export const INDEX_EMPTY = -1;
/** The multiplier of the {@linkcode EncoderIndex} hash (Fibonacci hashing, as an int32). */
export const INDEX_HASH = -1640531535; // 0x9e3779b1

/**
 * The entries of `latent` in `idx` (`[from, to)` into `rule`/`test`), empty
 * when no rule reads it. The policy engine inlines the same lookup.
 *
 * @example
 * ```ts
 * declare const set: CompiledPolicySet;
 * const idx = set.index.get("res12")!;
 * const [from, to] = indexEntries(idx, 4123);
 * for (let e = from; e < to; e++) console.log(set.rules[idx.rule[e]].id, idx.test[e]);
 * ```
 */
export function indexEntries(idx: EncoderIndex, latent: number): [number, number] {
  const { offsets, slotKey, mask } = idx;
  if (offsets) {
    return latent + 1 < offsets.length ? [offsets[latent], offsets[latent + 1]] : [0, 0];
  }
  if (idx.filter[latent & idx.filterMask] === 0) return [0, 0];
  for (let s = (Math.imul(latent, INDEX_HASH) >> idx.shift) & mask;; s = (s + 1) & mask) {
    const key = slotKey[s];
    if (key === latent) {
      const g = idx.slotGroup[s];
      return [idx.groups[g], idx.groups[g + 1]];
    }
    if (key === INDEX_EMPTY) return [0, 0];
  }
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

/** Reasons joined for a message, at most a few of them. */
function someReasons(reasons: string[]): string {
  const shown = reasons.slice(0, 5).join("; ");
  return reasons.length > 5 ? `${shown}; and ${reasons.length - 5} more` : shown;
}

/** Why `c` can never hold, or null. `id` gives equal conditions equal numbers. */
function never(
  c: CompiledCondition,
  tests: readonly CompiledTest[],
  id: (c: CompiledCondition) => number,
): string | null {
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
      return always(c.of, tests, id);
    case "any": {
      const reasons: string[] = [];
      for (const x of c.of) {
        const why = never(x, tests, id);
        if (why === null) return null;
        reasons.push(why);
      }
      return someReasons(reasons);
    }
    case "all": {
      for (const x of c.of) {
        const why = never(x, tests, id);
        if (why) return why;
      }
      const flat = flattenAll(c);
      const present = new Set(flat.map(id));
      if (flat.some((x) => x.kind === "not" && present.has(id(x.of)))) {
        return "'all' holds a condition and its negation";
      }
      // one pooled value above a and below b ≤ a: the first such pair, in order
      const leaves = flat.filter((x) => x.kind === "test");
      const lowestBelow = new Map<number, number>();
      for (const b of leaves) {
        if (b.op === "below") {
          lowestBelow.set(b.test, Math.min(lowestBelow.get(b.test) ?? Infinity, b.threshold));
        }
      }
      for (const a of leaves) {
        if (a.op !== "above" || !((lowestBelow.get(a.test) ?? Infinity) <= a.threshold)) continue;
        const b = leaves.find((b) =>
          b.test === a.test && b.op === "below" && b.threshold <= a.threshold
        )!;
        return `'all' needs one pooled value above ${a.threshold} and below ${b.threshold}`;
      }
      return null;
    }
  }
}

/** Why `c` always holds, or null. */
function always(
  c: CompiledCondition,
  tests: readonly CompiledTest[],
  id: (c: CompiledCondition) => number,
): string | null {
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
      return never(c.of, tests, id);
    case "all": {
      const reasons: string[] = [];
      for (const x of c.of) {
        const why = always(x, tests, id);
        if (why === null) return null;
        reasons.push(why);
      }
      return someReasons(reasons);
    }
    case "any": {
      for (const x of c.of) {
        const why = always(x, tests, id);
        if (why) return why;
      }
      const present = new Set(c.of.map(id));
      if (c.of.some((x) => x.kind === "not" && present.has(id(x.of)))) {
        return "'any' holds a condition and its negation";
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
  if (Array.isArray(set)) {
    if (set.length > ctx.limits.listItems) {
      ctx.problems.push({
        source,
        rule,
        code: "limit",
        reason: `expected at most ${ctx.limits.listItems} values in a list (limit listItems), ` +
          `found ${set.length}`,
      });
      return null;
    }
    return new Set(set.map(String));
  }
  const known = ctx.valueSets.get(set.list);
  if (known) {
    ctx.usedLists.add(set.list);
    return known;
  }
  const items = namedList(ctx, set.list, source, rule);
  if (items === null) return null;
  const values = new Set(items.map(String));
  ctx.valueSets.set(set.list, values);
  return values;
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

/** A set from its rules; the per-latent index is built on first use. */
function policySet(
  rules: CompiledRule[],
  warnings: PolicyWarning[],
  version: string,
  signals: ReadonlyMap<string, SignalInfo>,
): CompiledPolicySet {
  let index: Map<string, EncoderIndex> | undefined;
  const built = () => index ??= buildIndex(rules, signals);
  const encoderIds = [...new Set(rules.flatMap((r) => r.tests.map((t) => t.encoder)))].sort();
  return {
    rules,
    encoderIds,
    warnings,
    version,
    get index() {
      return built();
    },
    watchedLatents: (id) => built().get(id)?.watched.slice() ?? new Uint32Array(0),
  };
}

/**
 * A compiled set as plain data (no closures, no index), which structured
 * clone can carry from a worker: see {@linkcode policySetData} and
 * {@linkcode hydratePolicySet}.
 */
export interface CompiledPolicyData {
  rules: Omit<CompiledRule, "holds">[];
  warnings: PolicyWarning[];
  version: string;
}

/**
 * The plain data of a compiled set, to send to another thread.
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
 * declare const worker: Worker;
 * worker.postMessage(policySetData(compilePolicySet(files, signals)));
 * ```
 */
export function policySetData(set: CompiledPolicySet): CompiledPolicyData {
  return {
    rules: set.rules.map(({ holds: _, ...rule }) => rule),
    warnings: [...set.warnings],
    version: set.version,
  };
}

/**
 * A compiled set again from its data ({@linkcode policySetData}), for the
 * same `signals`: each rule's evaluation closure is rebuilt (linear in the
 * size of its condition, which compile has bounded).
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
 * const set = hydratePolicySet(policySetData(compilePolicySet(files, signals)), signals);
 * ```
 */
export function hydratePolicySet(
  data: CompiledPolicyData,
  signals: ReadonlyMap<string, SignalInfo>,
): CompiledPolicySet {
  const rules = data.rules.map((r) => ({
    ...r,
    holds: compileEval(r.condition, r.tests, false),
  }));
  return policySet(rules, data.warnings, data.version, signals);
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
    // by latent, keeping rule order within a latent: O(refs log refs), whatever dSae is
    const order = list.map((_, i) => i).sort((a, b) => list[a][0] - list[b][0] || a - b);
    const rule = new Uint32Array(list.length);
    const test = new Uint32Array(list.length);
    const watchedList: number[] = [];
    const groupList: number[] = [];
    order.forEach((j, at) => {
      const [l, r, t] = list[j];
      if (watchedList[watchedList.length - 1] !== l) {
        watchedList.push(l);
        groupList.push(at);
      }
      rule[at] = r;
      test[at] = t;
    });
    groupList.push(list.length);
    const watched = Uint32Array.from(watchedList);
    let bits = 2;
    while (1 << bits < 2 * watched.length) bits++;
    const slotKey = new Int32Array(1 << bits).fill(INDEX_EMPTY);
    const slotGroup = new Uint32Array(1 << bits);
    const mask = (1 << bits) - 1;
    const shift = 32 - bits;
    let filterBits = 12;
    while (1 << filterBits < 8 * watched.length) filterBits++;
    const filter = new Uint8Array(1 << filterBits);
    const filterMask = (1 << filterBits) - 1;
    watched.forEach((l, g) => {
      filter[l & filterMask] = 1;
      let s = (Math.imul(l, INDEX_HASH) >> shift) & mask;
      while (slotKey[s] !== INDEX_EMPTY) s = (s + 1) & mask;
      slotKey[s] = l;
      slotGroup[s] = g;
    });
    const top = watched.length > 0 ? watched[watched.length - 1] : -1;
    let offsets: Uint32Array | null = null;
    if (top < DENSE_INDEX_LATENTS) {
      offsets = new Uint32Array(top + 2);
      watched.forEach((l, g) => offsets![l + 1] = groupList[g + 1] - groupList[g]);
      for (let i = 0; i <= top; i++) offsets[i + 1] += offsets[i];
    }
    out.set(encoder, {
      kind: info.kind,
      offsets,
      watched,
      groups: Uint32Array.from(groupList),
      rule,
      test,
      slotKey,
      slotGroup,
      mask,
      shift,
      filter,
      filterMask,
    });
  }
  return out;
}
