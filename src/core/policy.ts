/**
 * Policy v0: rules of the form "latent L of SAE S is strictly above T",
 * compiled once into an index by SAE and latent, so that per token only the
 * rules watching an active latent are looked at. Pure: imports nothing
 * outside `src/core`.
 *
 * @module
 */
import type { SparseLatents } from "./sae.ts";

/** Alert severities, lowest first. */
export type Severity = "info" | "low" | "medium" | "high" | "critical";

/** Every {@linkcode Severity}, lowest first. */
export const SEVERITIES: readonly Severity[] = ["info", "low", "medium", "high", "critical"];

/** One v0 rule: fires when latent `latent` of SAE `sae` is strictly greater than `above`. */
export interface PolicyRule {
  /** Unique across all loaded policy files. */
  id: string;
  title: string;
  severity: Severity;
  description?: string;
  /** Encoder id (an SAE or a probe), as named in the monitor config. */
  sae: string;
  /** Latent index (probe: score index), `0 ≤ latent < dSae`. */
  latent: number;
  /**
   * Threshold; the rule fires when the value is strictly greater. `≥ 0` for
   * SAE latents (an inactive latent reads 0); any finite number for probes,
   * whose scores are present on every token.
   */
  above: number;
  /** What `sae`/`latent` name: an SAE latent (default) or a probe score. */
  signal?: "latent" | "probe";
  /** Where the rule was written (the line of its list item). */
  source: { file: string; line: number };
}

/** A rule that fired on one token. */
export interface RuleMatch {
  rule: PolicyRule;
  latent: number;
  value: number;
}

/** Rules compiled against the SAEs a monitor loads. */
export interface CompiledPolicies {
  readonly rules: readonly PolicyRule[];
  /** sae id → latent index → rules watching it */
  readonly index: ReadonlyMap<string, ReadonlyMap<number, readonly PolicyRule[]>>;
  /** sae id → sorted latent indices referenced by rules (a fresh copy; empty for an unknown SAE) */
  watchedLatents(sae: string): Uint32Array;
}

/** The rule field a compile problem is about, so tools can point at its column. */
export type PolicyField = "id" | "sae" | "latent" | "above";

/** One reason a set of rules does not compile. */
export interface PolicyProblem {
  rule: PolicyRule;
  field: PolicyField;
  reason: string;
}

/**
 * Rules do not compile against the monitor's SAEs. The message is one
 * `file:line: reason` line per problem; `problems` keeps the structure.
 *
 * @example
 * ```ts
 * try { compilePolicies(rules, saes); } catch (e) {
 *   if (e instanceof PolicyCompileError) for (const p of e.problems) console.error(p.reason);
 * }
 * ```
 */
export class PolicyCompileError extends TypeError {
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly PolicyProblem[]) {
    super(
      problems.map((p) => `${p.rule.source.file}:${p.rule.source.line}: ${p.reason}`).join("\n"),
    );
    this.name = "PolicyCompileError";
    this.problems = problems;
  }
}

function where(rule: PolicyRule): string {
  return `${rule.source.file}:${rule.source.line}`;
}

/**
 * Check `rules` against the SAEs a monitor loads and index them by SAE and
 * latent. Throws {@linkcode PolicyCompileError} listing every problem:
 * duplicate rule ids, unknown SAE ids, latents outside `0..dSae-1`, and
 * thresholds that are negative or not finite (an inactive latent reads as 0,
 * so a negative threshold would fire on every token).
 *
 * @example
 * ```ts
 * const saes = new Map([["demo-res", { dSae: 16 }]]);
 * const policies = compilePolicies([{
 *   id: "pi", title: "Prompt injection", severity: "high", sae: "demo-res",
 *   latent: 0, above: 2, source: { file: "p.yaml", line: 3 },
 * }], saes);
 * policies.watchedLatents("demo-res"); // Uint32Array [0]
 * ```
 */
export function compilePolicies(
  rules: PolicyRule[],
  saes: ReadonlyMap<string, { dSae: number; dense?: boolean }>,
): CompiledPolicies {
  const problems: PolicyProblem[] = [];
  const byId = new Map<string, PolicyRule>();
  const index = new Map<string, Map<number, PolicyRule[]>>();
  const known = [...saes.keys()].join(", ") || "none";
  for (const rule of rules) {
    const first = byId.get(rule.id);
    if (first) {
      problems.push({
        rule,
        field: "id",
        reason: `duplicate rule id '${rule.id}': expected ids to be unique, ` +
          `found it already defined at ${where(first)}`,
      });
    } else {
      byId.set(rule.id, rule);
    }
    let ok = true;
    const sae = saes.get(rule.sae);
    // dense encoders (probes) report every score, so any finite threshold is meaningful
    const dense = sae?.dense ?? false;
    if (!Number.isFinite(rule.above) || (!dense && rule.above < 0)) {
      ok = false;
      problems.push({
        rule,
        field: "above",
        reason: dense
          ? `rule '${rule.id}': expected a finite threshold, found ${rule.above}`
          : `rule '${rule.id}': expected a threshold ≥ 0, found ${rule.above}; ` +
            "a latent that is not active reads as 0, so a negative threshold would fire on every token",
      });
    }
    if (sae && (rule.signal === "probe") !== dense) {
      ok = false;
      problems.push({
        rule,
        field: "sae",
        reason: rule.signal === "probe"
          ? `rule '${rule.id}': expected a probe id, found SAE '${rule.sae}' (use 'sae:' and 'latent:')`
          : `rule '${rule.id}': expected an SAE id, found probe '${rule.sae}' (use 'probe:')`,
      });
    }
    if (!sae) {
      ok = false;
      problems.push({
        rule,
        field: "sae",
        reason: `rule '${rule.id}': unknown ${
          rule.signal === "probe" ? "probe" : "SAE"
        } '${rule.sae}'; expected one the monitor loads (${known})`,
      });
    } else if (!Number.isInteger(rule.latent) || rule.latent < 0 || rule.latent >= sae.dSae) {
      ok = false;
      problems.push({
        rule,
        field: "latent",
        reason: `rule '${rule.id}': expected a latent index in 0..${sae.dSae - 1} ` +
          `(SAE '${rule.sae}' has d_sae ${sae.dSae}), found ${rule.latent}`,
      });
    }
    if (!ok) continue;
    let latents = index.get(rule.sae);
    if (!latents) index.set(rule.sae, latents = new Map());
    const list = latents.get(rule.latent);
    if (list) list.push(rule);
    else latents.set(rule.latent, [rule]);
  }
  if (problems.length > 0) throw new PolicyCompileError(problems);

  const watched = new Map<string, Uint32Array>();
  for (const [sae, latents] of index) {
    watched.set(sae, Uint32Array.from(latents.keys()).sort());
  }
  const compiled: CompiledPolicies = {
    rules: Object.freeze([...rules]),
    index,
    watchedLatents: (sae) => watched.get(sae)?.slice() ?? new Uint32Array(0),
  };
  WATCHED.set(compiled, watched);
  return compiled;
}

/** Sorted watched latents of policies built here, read without copying on the hot path. */
const WATCHED = new WeakMap<CompiledPolicies, ReadonlyMap<string, Uint32Array>>();

/** First position in sorted `indices` whose value is ≥ `target`. */
function lowerBound(indices: Uint32Array, target: number, from: number): number {
  let lo = from;
  let hi = indices.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (indices[mid] < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The rules that fire on one token's latents of SAE `sae`: only rules indexed
 * under an active latent are looked at, and a rule fires when the value is
 * strictly greater than its threshold. Matches come in ascending latent
 * order, then rule order. A latent absent from `latents` reads as 0 and never
 * fires (thresholds are ≥ 0).
 *
 * @example
 * ```ts
 * const latents = { indices: new Uint32Array([0, 7]), values: new Float32Array([3.5, 1]) };
 * evaluateToken(policies, "demo-res", latents); // [{ rule: pi, latent: 0, value: 3.5 }]
 * ```
 */
export function evaluateToken(
  policies: CompiledPolicies,
  sae: string,
  latents: SparseLatents,
): RuleMatch[] {
  const byLatent = policies.index.get(sae);
  const matches: RuleMatch[] = [];
  if (!byLatent || byLatent.size === 0) return matches;
  const { indices, values } = latents;
  const fire = (i: number) => {
    const rules = byLatent.get(indices[i]);
    if (!rules) return;
    const value = values[i];
    for (const rule of rules) {
      if (value > rule.above) matches.push({ rule, latent: indices[i], value });
    }
  };
  if (byLatent.size * 8 < indices.length) {
    // Few watched latents, many active ones (TopK, full encodes): search for
    // each watched latent instead of walking every active one.
    let from = 0;
    const watched = WATCHED.get(policies)?.get(sae) ?? policies.watchedLatents(sae);
    for (const latent of watched) {
      from = lowerBound(indices, latent, from);
      if (from >= indices.length) break;
      if (indices[from] === latent) fire(from);
    }
  } else {
    for (let i = 0; i < indices.length; i++) fire(i);
  }
  return matches;
}
