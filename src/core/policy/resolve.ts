/**
 * Name resolution for policy compilation (`compile.ts`): a condition as
 * written resolved into a {@linkcode Resolved} tree (tests by `signals.ts`,
 * macro references to the macro's own resolved tree, shared, not copied),
 * and the depth and size limits checked on it.
 *
 * Why it is linear: a macro is resolved once (`macros.ts`), into a tree that
 * macros naming it point into (nothing is copied). Each resolved node knows
 * its expanded size and depth, so a condition beyond the limits is refused
 * before it is expanded. A rule's condition is then built from its tree by
 * `condition_builder.ts`.
 *
 * @module
 */
import type { Condition, SourceRef } from "./ast.ts";
import { type Ctx, node, problem, type Resolved, someNames } from "./context.ts";
import { foundCount } from "./limits.ts";
import { resolveTest } from "./signals.ts";

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
