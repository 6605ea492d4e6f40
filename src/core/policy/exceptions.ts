/**
 * A rule's exceptions resolved: the value sets they match (inline lists or
 * named `lists`) turned into sets of strings.
 *
 * @module
 */
import type { ExceptionDef, SourceRef, ValueSet } from "./ast.ts";
import type { CompiledException } from "./compiled.ts";
import { type Ctx, namedList } from "./context.ts";

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

export function resolveException(ctx: Ctx, e: ExceptionDef, rule: string): CompiledException {
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
