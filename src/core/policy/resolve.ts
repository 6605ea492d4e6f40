/**
 * Name resolution for policy compilation (`compile.ts`): signal tests to
 * concrete `(encoder, index)` signals, macros resolved once each, in
 * dependency order, and shared by every rule and macro that names them, then
 * a rule's condition turned into the tree the engine runs.
 *
 * Why it is linear: a macro is resolved once, into a {@linkcode Resolved}
 * tree that macros naming it point into (nothing is copied), and loops are
 * found by one depth-first walk of the macro graph with an explicit stack (a
 * chain of 10,000 macros neither recurses 10,000 deep nor re-expands a macro
 * per user). Each resolved node knows its expanded size and depth, so a
 * condition beyond the limits is refused before it is expanded. Nested `all`
 * in `all` (and `any` in `any`) are merged when a rule's condition is built,
 * without recursion, which keeps chains of `any` macros shallow.
 *
 * @module
 */
import type {
  Condition,
  ListDef,
  MacroDef,
  Pool,
  SignalRef,
  SignalTest,
  SourceRef,
} from "./ast.ts";
import type { CompiledCondition, CompiledTest, SignalInfo } from "./compiled.ts";
import type { PolicyProblem, ProblemCode } from "./problems.ts";
import { foundCount, type PolicyLimits } from "./limits.ts";

/** JSON with object keys sorted and `source` fields left out: the content of a definition. */
export function canonical(v: unknown): string {
  const out: string[] = [];
  canonicalInto(v, out);
  return out.join("");
}

const setText = new WeakMap<ReadonlySet<unknown>, string>();

function canonicalInto(v: unknown, out: string[]): void {
  if (Array.isArray(v)) {
    out.push("[");
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(",");
      canonicalInto(v[i], out);
    }
    out.push("]");
  } else if (v instanceof Set) {
    // exception sets are shared between rules: sort each once
    let s = setText.get(v);
    if (s === undefined) setText.set(v, s = canonical([...v].sort()));
    out.push(s);
  } else if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => k !== "source" && o[k] !== undefined).sort();
    out.push("{");
    keys.forEach((k, i) => {
      out.push(`${i > 0 ? "," : ""}${JSON.stringify(k)}:`);
      canonicalInto(o[k], out);
    });
    out.push("}");
  } else out.push(JSON.stringify(v) ?? "null");
}

/**
 * Names for a message: the first `n`, then how many more.
 *
 * @example
 * ```ts
 * someNames(["a", "b", "c"], 2); // "a, b and 1 more"
 * ```
 */
export function someNames(names: Iterable<string>, n = 10): string {
  const all = [...names];
  if (all.length === 0) return "none";
  const shown = all.slice(0, n).join(", ");
  return all.length > n ? `${shown} and ${all.length - n} more` : shown;
}

/** A signal a test reads. */
export interface ResolvedSignal {
  encoder: string;
  kind: "latent" | "probe";
  index: number;
  label?: string;
}

/**
 * A condition with names resolved, before its tests are numbered for one
 * rule: macros are resolved once into these and shared. `size` bounds the
 * nodes it expands to; `depth` is the depth it expands to with nested
 * `all`/`any` merged.
 */
export type Resolved =
  & { size: number; depth: number; source: SourceRef }
  & (
    | {
      kind: "leaf";
      signal: ResolvedSignal;
      sae: boolean;
      pool: Pool;
      op: "above" | "below";
      threshold: number;
    }
    | { kind: "all" | "any"; of: Resolved[] }
    | { kind: "not"; of: Resolved }
  );

function node(kind: "all" | "any", of: Resolved[], source: SourceRef): Resolved;
function node(kind: "not", of: Resolved, source: SourceRef): Resolved;
function node(kind: "all" | "any" | "not", of: Resolved[] | Resolved, source: SourceRef): Resolved {
  if (!Array.isArray(of)) {
    return { kind: "not", of, source, size: of.size + 1, depth: of.depth + 1 };
  }
  let size = 1;
  let inner = 0;
  for (const x of of) {
    size += x.size;
    inner = Math.max(inner, x.kind === kind ? x.depth - 1 : x.depth);
  }
  return { kind: kind as "all" | "any", of, source, size, depth: inner + 1 };
}

/** What resolution reads and collects. */
export interface Ctx {
  signals: ReadonlyMap<string, SignalInfo>;
  limits: PolicyLimits;
  macros: Map<string, MacroDef>;
  lists: Map<string, ListDef>;
  usedMacros: Set<string>;
  usedLists: Set<string>;
  problems: PolicyProblem[];
  labelIndex: Map<string, Map<string, number[]>>;
  /** Macros resolved so far; null after a problem (reported at the macro). */
  resolved: Map<string, Resolved | null>;
  /** The macros and lists each macro's own condition names, for use counts. */
  refs: Map<string, { macros: { name: string; source: SourceRef }[]; lists: string[] }>;
  /** Exception value sets of named lists, built once. */
  valueSets: Map<string, ReadonlySet<string>>;
}

/** A rule's pooled signals while its condition is built. */
export class TestTable {
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

function problem(
  ctx: Ctx,
  rule: string | undefined,
  source: SourceRef,
  code: ProblemCode,
  reason: string,
) {
  ctx.problems.push({ source, rule, code, reason });
}

/**
 * Nesting depth of a condition as written (macro references not followed),
 * without recursion: conditions built in code skip the parser's depth limit.
 */
export function writtenDepth(c: Condition): number {
  let max = 0;
  const stack: [Condition, number][] = [[c, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    max = Math.max(max, d);
    if (x.kind === "all" || x.kind === "any") { for (const y of x.of) stack.push([y, d + 1]); }
    else if (x.kind === "not") stack.push([x.of, d + 1]);
  }
  return max;
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

/** Items of the named list, or null (reported) when there is none. */
export function namedList(
  ctx: Ctx,
  name: string,
  source: SourceRef,
  rule: string | undefined,
): (string | number)[] | null {
  ctx.usedLists.add(name);
  const list = ctx.lists.get(name);
  if (list) return list.items;
  problem(
    ctx,
    rule,
    source,
    "unknown-list",
    `unknown list '${name}'; expected one of the lists defined (${someNames(ctx.lists.keys())})`,
  );
  return null;
}

/** Resolve a signal reference to concrete `(encoder, index)` pairs; `null` after a problem. */
function resolveSignal(
  ctx: Ctx,
  rule: string | undefined,
  sig: SignalRef,
  source: SourceRef,
): ResolvedSignal[] | null {
  const encoder = sig.kind === "probe" ? sig.probe : sig.sae;
  const info = ctx.signals.get(encoder);
  const want = sig.kind === "probe" ? "probe" : "sae";
  const bad = (code: ProblemCode, reason: string) => {
    problem(ctx, rule, source, code, reason);
    return null;
  };
  if (!info) {
    const known = [...ctx.signals].filter(([, i]) => i.kind === want).map(([k]) => k);
    return bad(
      "unknown-encoder",
      `unknown ${want === "sae" ? "SAE" : "probe"} '${encoder}'; expected one the monitor loads (${
        someNames(known)
      })`,
    );
  }
  if (info.kind !== want) {
    return bad(
      "wrong-encoder-kind",
      want === "probe"
        ? `expected a probe, found SAE '${encoder}' (read its latents with 'sae:' and 'latent:')`
        : `expected an SAE, found probe '${encoder}' (read its scores with 'probe:')`,
    );
  }
  let indices: readonly unknown[];
  if (sig.kind === "label") {
    if (!info.labels || info.labels.size === 0) {
      return bad(
        "no-labels",
        `latent label '${sig.label}': SAE '${encoder}' has no labels loaded; expected a latent index`,
      );
    }
    const found = labelsOf(ctx, encoder, info).get(sig.label.trim().toLowerCase()) ?? [];
    if (found.length === 0) {
      const needle = sig.label.trim().toLowerCase();
      const near = [...info.labels].filter(([, l]) => l.toLowerCase().includes(needle)).slice(0, 3);
      return bad(
        "unknown-label",
        `unknown latent label '${sig.label}' for SAE '${encoder}'; expected a loaded label ` +
          `(matched exactly, ignoring case)` +
          (near.length
            ? `; labels containing it: ${near.map(([i, l]) => `${i} '${l}'`).join(", ")}`
            : ""),
      );
    }
    if (found.length > 1) {
      return bad(
        "ambiguous-label",
        `latent label '${sig.label}' of SAE '${encoder}' is ambiguous: expected one latent, found ` +
          `${found.length} (${
            found.slice(0, 10).map((i) => `${i} '${info.labels!.get(i)}'`).join(", ")
          }); use 'latent:' with an index`,
      );
    }
    // a label names a loaded latent: in range by construction
    return [{ encoder, kind: "latent", index: found[0], label: info.labels.get(found[0])! }];
  } else if (sig.kind === "latents") {
    const list = Array.isArray(sig.indices)
      ? sig.indices
      : namedList(ctx, sig.indices.list, source, rule);
    if (list === null) return null;
    if (list.length === 0) {
      return bad("list-item", "expected at least one latent, found an empty list");
    }
    if (Array.isArray(sig.indices) && list.length > ctx.limits.listItems) {
      return bad(
        "limit",
        `expected at most ${ctx.limits.listItems} latents in a list (limit listItems), found ` +
          `${list.length}`,
      );
    }
    indices = list;
  } else {
    indices = [sig.index];
  }
  const what = want === "sae" ? "latent" : "score";
  let ok = true;
  for (const i of indices) {
    if (typeof i === "number" && Number.isInteger(i) && i >= ctx.limits.latentIndex) {
      ok = false;
      problem(
        ctx,
        rule,
        source,
        "latent-index",
        `expected a ${what} index below ${ctx.limits.latentIndex} (limit latentIndex), found ${i}`,
      );
    } else if (typeof i !== "number" || !Number.isInteger(i) || i < 0 || i >= info.dSae) {
      ok = false;
      problem(
        ctx,
        rule,
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
  return [...new Set(indices as number[])].map((index) => ({
    encoder,
    kind: want === "sae" ? "latent" as const : "probe" as const,
    index,
    ...(want === "sae" && info.labels?.has(index) ? { label: info.labels.get(index)! } : {}),
  }));
}

function checkPool(ctx: Ctx, rule: string | undefined, pool: Pool, source: SourceRef): boolean {
  const bad = (reason: string) => {
    problem(ctx, rule, source, "pool", reason);
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

function resolveTest(ctx: Ctx, rule: string | undefined, test: SignalTest): Resolved | null {
  const signals = resolveSignal(ctx, rule, test.signal, test.source);
  let ok = signals !== null;
  ok = checkPool(ctx, rule, test.pool, test.source) && ok;
  const sae = test.signal.kind !== "probe";
  const bad = (code: ProblemCode, reason: string) => {
    ok = false;
    problem(ctx, rule, test.source, code, reason);
  };
  if (!Number.isFinite(test.threshold)) {
    bad("threshold", `expected a finite threshold, found ${test.threshold}`);
  } else if (sae && test.op === "above" && test.threshold < 0) {
    bad(
      "fires-every-token",
      `expected an 'above' threshold ≥ 0 for an SAE latent, found ${test.threshold}: ` +
        "a latent that is not active reads 0 and pooled latents are never negative, " +
        "so this test would hold on every token",
    );
  }
  if (sae && test.pool.kind === "count" && test.pool.above < 0) {
    bad(
      "fires-every-token",
      `count: expected 'above' ≥ 0 for an SAE latent, found ${test.pool.above}: ` +
        "a latent that is not active reads 0, so every token would count",
    );
  }
  if (!ok || signals === null) return null;
  const { pool, op, threshold, source } = test;
  const leaves: Resolved[] = signals.map((signal) => ({
    kind: "leaf",
    signal,
    sae,
    pool,
    op,
    threshold,
    source,
    size: 1,
    depth: 1,
  }));
  return leaves.length === 1 ? leaves[0] : node("any", leaves, source);
}

/**
 * Resolve a condition as written (its depth already checked): tests
 * resolved, macro references replaced by the macro's resolved condition
 * (shared, not copied). Problems are reported once each; `null` after one.
 */
export function resolveCondition(
  ctx: Ctx,
  rule: string | undefined,
  c: Condition,
): Resolved | null {
  switch (c.kind) {
    case "test":
      return resolveTest(ctx, rule, c);
    case "all":
    case "any": {
      if (c.of.length === 0) {
        problem(
          ctx,
          rule,
          c.source,
          "empty-condition",
          `'${c.kind}' expected at least one condition, found none`,
        );
        return null;
      }
      const of = c.of.map((x) => resolveCondition(ctx, rule, x));
      if (of.some((x) => x === null)) return null;
      return node(c.kind, of as Resolved[], c.source);
    }
    case "not": {
      const of = resolveCondition(ctx, rule, c.of);
      return of === null ? null : node("not", of, c.source);
    }
    case "macro": {
      ctx.usedMacros.add(c.name);
      if (!ctx.macros.has(c.name)) {
        problem(
          ctx,
          rule,
          c.source,
          "unknown-macro",
          `unknown macro '${c.name}'; expected one of the macros defined (${
            someNames(ctx.macros.keys())
          })`,
        );
        return null;
      }
      // not resolved: part of a loop, or refused; reported at the macro
      return ctx.resolved.get(c.name) ?? null;
    }
  }
}

/** The macros and lists a condition names directly, in order, without recursion. */
function directRefs(
  c: Condition,
): { macros: { name: string; source: SourceRef }[]; lists: string[] } {
  const macros: { name: string; source: SourceRef }[] = [];
  const lists: string[] = [];
  const stack: Condition[] = [c];
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (x.kind === "all" || x.kind === "any") {
      for (let i = x.of.length - 1; i >= 0; i--) stack.push(x.of[i]);
    } else if (x.kind === "not") stack.push(x.of);
    else if (x.kind === "macro") macros.push({ name: x.name, source: x.source });
    else if (x.signal.kind === "latents" && !Array.isArray(x.signal.indices)) {
      lists.push(x.signal.indices.list);
    }
  }
  return { macros, lists };
}

/** Report a condition beyond the depth or size limit; true when it is within both. */
export function withinLimits(
  ctx: Ctx,
  rule: string | undefined,
  what: string,
  res: { size: number; depth: number },
  source: SourceRef,
  nodesLeft = ctx.limits.conditionNodes,
): boolean {
  const { conditionDepth, conditionNodes } = ctx.limits;
  if (res.depth > conditionDepth) {
    problem(
      ctx,
      rule,
      source,
      "limit",
      `${what} expected a condition at most ${conditionDepth} levels deep with its macros ` +
        `expanded (limit conditionDepth), found ${foundCount(res.depth, conditionDepth)}`,
    );
    return false;
  }
  if (res.size > nodesLeft) {
    problem(
      ctx,
      rule,
      source,
      "limit",
      `${what} expected at most ${conditionNodes} conditions with macros expanded (limit ` +
        `conditionNodes, all rules together), found ${
          nodesLeft === conditionNodes ? foundCount(res.size, conditionNodes) : "more"
        }`,
    );
    return false;
  }
  return true;
}

/**
 * Resolve every macro once, dependencies first, reporting loops (each once)
 * and each macro's own problems at its lines, in the order macros are
 * defined. Fills `ctx.resolved` and `ctx.refs`.
 */
export function resolveMacros(ctx: Ctx): void {
  for (const [name, m] of ctx.macros) ctx.refs.set(name, directRefs(m.condition));
  // depth-first over the macro graph with an explicit stack: post-order, and loops
  const state = new Map<string, "open" | "done">();
  const order: string[] = [];
  const inLoop = new Set<string>();
  const loopsSeen = new Set<string>();
  const buckets = new Map<string, PolicyProblem[]>();
  for (const root of ctx.macros.keys()) {
    if (state.has(root)) continue;
    const loops: PolicyProblem[] = [];
    const stack: { name: string; next: number }[] = [{ name: root, next: 0 }];
    const at = new Map<string, number>([[root, 0]]);
    state.set(root, "open");
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const refs = ctx.refs.get(top.name)!.macros;
      if (top.next >= refs.length) {
        stack.pop();
        at.delete(top.name);
        state.set(top.name, "done");
        order.push(top.name);
        continue;
      }
      const ref = refs[top.next++];
      if (!ctx.macros.has(ref.name)) continue; // unknown: reported when resolved
      const s = state.get(ref.name);
      if (s === undefined) {
        state.set(ref.name, "open");
        at.set(ref.name, stack.length);
        stack.push({ name: ref.name, next: 0 });
      } else if (s === "open" && !(inLoop.has(ref.name) && inLoop.has(top.name))) {
        const loop = stack.slice(at.get(ref.name)!).map((f) => f.name);
        for (const n of loop) inLoop.add(n);
        const key = [...loop].sort().join("\u0000");
        if (loopsSeen.has(key)) continue;
        loopsSeen.add(key);
        const path = [...loop, ref.name];
        const shown = path.length > 12
          ? [...path.slice(0, 6), `… (${path.length - 10} more)`, ...path.slice(-4)]
          : path;
        loops.push({
          source: ref.source,
          code: "macro-cycle",
          reason: `macro cycle: ${shown.join(" → ")}; expected macros to refer to each other ` +
            "without a loop",
        });
      }
    }
    buckets.set(root, loops);
  }
  const own = new Map<string, PolicyProblem[]>();
  const saved = ctx.problems;
  for (const name of order) {
    const m = ctx.macros.get(name)!;
    ctx.problems = [];
    let res: Resolved | null = null;
    const depth = writtenDepth(m.condition);
    if (depth > ctx.limits.conditionDepth) {
      withinLimits(ctx, undefined, `macro '${name}':`, { depth, size: 0 }, m.source);
    } else {
      res = resolveCondition(ctx, undefined, m.condition);
      if (res && !withinLimits(ctx, undefined, `macro '${name}':`, res, m.source)) res = null;
    }
    ctx.resolved.set(name, inLoop.has(name) ? null : res);
    own.set(name, ctx.problems);
  }
  ctx.problems = saved;
  for (const name of ctx.macros.keys()) {
    ctx.problems.push(...own.get(name)!, ...(buckets.get(name) ?? []));
  }
}

/**
 * Macros and lists rules use, directly or through macros (one walk of the
 * macro graph from what rules name).
 */
export function usedByRules(ctx: Ctx): { macros: Set<string>; lists: Set<string> } {
  const macros = new Set<string>();
  const lists = new Set(ctx.usedLists);
  const todo = [...ctx.usedMacros];
  while (todo.length > 0) {
    const name = todo.pop()!;
    if (macros.has(name)) continue;
    macros.add(name);
    const refs = ctx.refs.get(name);
    if (!refs) continue;
    for (const l of refs.lists) lists.add(l);
    for (const m of refs.macros) if (!macros.has(m.name)) todo.push(m.name);
  }
  return { macros, lists };
}

/**
 * Builds one rule's condition from its resolved form: tests numbered in the
 * rule's {@linkcode TestTable} (a test is a trigger when its signal being
 * high can make the rule hold), nested `all`/`any` merged, and every node
 * given a structural id (equal ids, equal conditions) for the lint checks.
 */
export class ConditionBuilder {
  readonly table = new TestTable();
  readonly #ids = new WeakMap<CompiledCondition, number>();
  readonly #keys = new Map<string, number>();

  /** Structural id of a node this builder made. */
  id(c: CompiledCondition): number {
    return this.#ids.get(c)!;
  }

  #intern(c: CompiledCondition, key: string): CompiledCondition {
    let id = this.#keys.get(key);
    if (id === undefined) this.#keys.set(key, id = this.#keys.size);
    this.#ids.set(c, id);
    return c;
  }

  /** The condition of `res`; recursion is as deep as its merged depth (checked by the caller). */
  build(res: Resolved, negated = false): CompiledCondition {
    switch (res.kind) {
      case "leaf": {
        const { signal, sae, pool, op, threshold, source } = res;
        const trigger = sae ? (op === "above") !== negated : !negated;
        const test = this.table.slot({ ...signal, pool }, trigger);
        return this.#intern(
          { kind: "test", test, op, threshold, source },
          `t${test}:${op}:${threshold}`,
        );
      }
      case "not": {
        const of = this.build(res.of, !negated);
        return this.#intern({ kind: "not", of, source: res.source }, `n${this.id(of)}`);
      }
      default: {
        const of: CompiledCondition[] = [];
        const stack: [Resolved[], number][] = [[res.of, 0]];
        while (stack.length > 0) {
          const top = stack[stack.length - 1];
          if (top[1] >= top[0].length) {
            stack.pop();
            continue;
          }
          const x = top[0][top[1]++];
          if (x.kind === res.kind) stack.push([(x as { of: Resolved[] }).of, 0]);
          else of.push(this.build(x, negated));
        }
        const key = `${res.kind}(${of.map((x) => this.id(x)).join(",")})`;
        return this.#intern({ kind: res.kind, of, source: res.source }, key);
      }
    }
  }
}
