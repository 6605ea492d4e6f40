/**
 * What name resolution works on: the context it reads and collects into
 * ({@linkcode Ctx}), the resolved condition tree ({@linkcode Resolved}) with
 * each node's expanded size and depth, and the problems and named lists it
 * reports and reads.
 *
 * @module
 */
import type { ListDef, MacroDef, Pool, SourceRef } from "./ast.ts";
import type { CompiledFamily, SignalInfo } from "./compiled.ts";
import type { PolicyLimits } from "./limits.ts";
import type { PolicyProblem, ProblemCode } from "./problems.ts";

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
  family?: CompiledFamily;
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
      /** Written `name:` (with `.<latent>` for each latent of a `latents` test). */
      name?: string;
    }
    | { kind: "all" | "any"; of: Resolved[] }
    | { kind: "not"; of: Resolved }
  );

export function node(kind: "all" | "any", of: Resolved[], source: SourceRef): Resolved;
export function node(kind: "not", of: Resolved, source: SourceRef): Resolved;
export function node(
  kind: "all" | "any" | "not",
  of: Resolved[] | Resolved,
  source: SourceRef,
): Resolved {
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

export function problem(
  ctx: Ctx,
  rule: string | undefined,
  source: SourceRef,
  code: ProblemCode,
  reason: string,
) {
  ctx.problems.push({ source, rule, code, reason });
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
