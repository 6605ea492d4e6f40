/**
 * Conditions that can never hold or always hold, found from a compiled
 * condition alone (thresholds, count windows, a test and its negation), for
 * the `never-fires` and `always-holds` warnings.
 *
 * @module
 */
import type { CompiledCondition, CompiledTest } from "./compiled.ts";

/** Reasons joined for a message, at most a few of them. */
function someReasons(reasons: string[]): string {
  const shown = reasons.slice(0, 5).join("; ");
  return reasons.length > 5 ? `${shown}; and ${reasons.length - 5} more` : shown;
}

/** Why `c` can never hold, or null. `id` gives equal conditions equal numbers. */
export function never(
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
export function always(
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
