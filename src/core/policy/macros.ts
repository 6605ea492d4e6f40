/**
 * The macro graph: every macro resolved once, dependencies first, loops found
 * by one depth-first walk with an explicit stack (a chain of 10,000 macros
 * neither recurses 10,000 deep nor re-expands a macro per user), and the
 * macros and lists rules use, directly or through macros.
 *
 * @module
 */
import type { Condition, SourceRef } from "./ast.ts";
import type { Ctx, Resolved } from "./context.ts";
import type { PolicyProblem } from "./problems.ts";
import { resolveCondition, withinLimits, writtenDepth } from "./resolve.ts";

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
