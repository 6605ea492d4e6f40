/**
 * The rules a gated decode step waits for. A gated frame's verdict carries
 * steering commands, and only rules that steer plan any: a rule that only
 * alerts cannot change a verdict. `serve` answers a gated frame once its
 * steering rules are evaluated (on the latents they read, encoded first),
 * and evaluates the other rules after the verdict is written
 * (docs/steering.md, "What a gated step waits for"). Rules never read
 * each other's state, so splitting a set into these two parts gives each
 * rule the firings it has when the set is evaluated whole.
 *
 * @module
 */
import type { CompiledPolicySet, CompiledRule } from "./compiled.ts";

/** The rules that steer: a gated frame's verdict waits for these. */
export const PART_VERDICT = 1;
/** The rules that only alert: evaluated after a gated frame is answered. */
export const PART_REST = 2;
/** Every rule. */
export const PART_ALL = PART_VERDICT | PART_REST;
/** Which rules an evaluation runs: {@linkcode PART_VERDICT}, {@linkcode PART_REST} or {@linkcode PART_ALL}. */
export type RulePart = typeof PART_VERDICT | typeof PART_REST | typeof PART_ALL;

/**
 * The part a rule belongs to: {@linkcode PART_VERDICT} when it has a steer
 * action, else {@linkcode PART_REST}.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * declare const rule: CompiledRule;
 * const waitsFor = rulePart(rule) === PART_VERDICT;
 * ```
 */
export function rulePart(rule: CompiledRule): typeof PART_VERDICT | typeof PART_REST {
  return rule.steer.length > 0 ? PART_VERDICT : PART_REST;
}

/**
 * How a set divides: whether it has rules of each part. A set whose rules
 * all steer (or that has none) gains nothing from answering gated frames
 * early, and is evaluated whole.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compiled.ts";
 * declare const set: CompiledPolicySet;
 * if (ruleParts(set).rest > 0) console.log("gated frames are answered before the alert-only rules run");
 * ```
 */
export function ruleParts(set: CompiledPolicySet): { verdict: number; rest: number } {
  let verdict = 0;
  for (const rule of set.rules) if (rulePart(rule) === PART_VERDICT) verdict++;
  return { verdict, rest: set.rules.length - verdict };
}

/**
 * The sorted latents (or probe scores) of `encoderId` that the steering
 * rules of `set` read, family members included: what must be encoded before
 * a gated frame can be answered. A subset of `set.watchedLatents(encoderId)`.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compiled.ts";
 * declare const set: CompiledPolicySet;
 * verdictLatents(set, "res"); // e.g. Uint32Array [5]
 * ```
 */
export function verdictLatents(set: CompiledPolicySet, encoderId: string): Uint32Array {
  const latents = new Set<number>();
  for (const rule of set.rules) {
    if (rulePart(rule) !== PART_VERDICT) continue;
    for (const test of rule.tests) {
      if (test.encoder !== encoderId) continue;
      if (test.family) { for (const m of test.family.members) latents.add(m); }
      else latents.add(test.index);
    }
  }
  return Uint32Array.from(latents).sort();
}

/**
 * The encoders the steering rules of `set` read, sorted.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compiled.ts";
 * declare const set: CompiledPolicySet;
 * verdictEncoderIds(set); // e.g. ["res"]
 * ```
 */
export function verdictEncoderIds(set: CompiledPolicySet): string[] {
  const ids = new Set<string>();
  for (const rule of set.rules) {
    if (rulePart(rule) === PART_VERDICT) { for (const t of rule.tests) ids.add(t.encoder); }
  }
  return [...ids].sort();
}
