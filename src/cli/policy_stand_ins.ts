/**
 * Stand-in encoders for `policy lint` without `--monitor` (`./policy.ts`):
 * the SAEs and probes that policy files name, inferred from the files
 * themselves, so compile's checks that do not need the real SAEs run; and
 * the compile problems that only the real SAEs can judge.
 *
 * @module
 */
import type { Condition, PolicyFileDef, SteerAction } from "../core/policy/ast.ts";
import type { SignalInfo } from "../core/policy/compile.ts";
import { DEFAULT_POLICY_LIMITS } from "../core/policy/limits.ts";

/** Compile problems that need the real SAEs; stand-in encoders cannot judge them. */
export const NEEDS_MONITOR: ReadonlySet<string> = new Set([
  "unknown-encoder",
  "latent-range",
  "unknown-label",
  "ambiguous-label",
  "no-labels",
  "no-decoder",
]);

/**
 * Stand-in encoders for linting without a monitor: every SAE and probe the
 * files name, as wide as the latent index limit allows (indices beyond it are
 * errors of their own, `latent-index`), with every label they use (one latent
 * each), so compile's other checks can run. Nothing is allocated by a width:
 * lint never builds the per-latent index.
 *
 * @example
 * ```ts
 * import { parsePolicyFileDef } from "../config/policy_file.ts";
 * const def = parsePolicyFileDef(
 *   `version: 2
 * rules:
 *   - id: r
 *     title: R
 *     severity: low
 *     when: { sae: res, label: "Prompt injection", above: 1 }
 * `,
 *   "p.yaml",
 * );
 * standInSignals([def]).get("res"); // { kind: "sae", dSae: 2 ** 31, labels: Map { 0 => "prompt injection" } }
 * ```
 */
export function standInSignals(defs: PolicyFileDef[]): Map<string, SignalInfo> {
  const saes = new Map<string, { max: number; labels: Set<string> }>();
  const probes = new Map<string, number>();
  const lists = new Map<string, (string | number)[]>();
  for (const d of defs) for (const l of d.lists) lists.set(l.name, l.items);
  const sae = (id: string) => {
    let s = saes.get(id);
    if (!s) saes.set(id, s = { max: -1, labels: new Set() });
    return s;
  };
  const index = (id: string, i: unknown) => {
    const s = sae(id);
    if (typeof i === "number" && Number.isInteger(i)) s.max = Math.max(s.max, i);
  };
  const visit = (c: Condition): void => {
    switch (c.kind) {
      case "all":
      case "any":
        return c.of.forEach(visit);
      case "not":
        return visit(c.of);
      case "macro":
        return;
    }
    const s = c.signal;
    if (s.kind === "probe") probes.set(s.probe, Math.max(probes.get(s.probe) ?? 0, s.index));
    else if (s.kind === "latent") index(s.sae, s.index);
    else if (s.kind === "label") sae(s.sae).labels.add(s.label.trim().toLowerCase());
    else if (s.kind === "family") {
      index(s.sae, s.of);
      if (Array.isArray(s.members)) { for (const i of s.members) index(s.sae, i); }
    } else {
      const items = Array.isArray(s.indices) ? s.indices : lists.get(s.indices.list) ?? [];
      sae(s.sae);
      for (const i of items) index(s.sae, i);
    }
  };
  const steer = (a: SteerAction) => {
    if (a.kind === "clamp" || a.kind === "ablate") index(a.sae, a.latent);
    if ((a.kind === "add" || a.kind === "cap") && "sae" in a.direction) {
      index(a.direction.sae, a.direction.latent);
    }
  };
  for (const d of defs) {
    for (const m of d.macros) visit(m.condition);
    for (const r of d.rules) {
      visit(r.condition);
      for (const a of r.actions) if (a.kind === "steer") steer(a.steer);
    }
  }
  const out = new Map<string, SignalInfo>();
  for (const [id, s] of saes) {
    const labels = new Map<number, string>();
    let next = s.max + 1;
    for (const l of s.labels) labels.set(next++, l);
    out.set(id, { kind: "sae", dSae: Math.max(next, DEFAULT_POLICY_LIMITS.latentIndex), labels });
  }
  // a name used as both an SAE and a probe stays an SAE: compile reports the probe uses
  for (const [id] of probes) {
    if (!out.has(id)) out.set(id, { kind: "probe", dSae: DEFAULT_POLICY_LIMITS.latentIndex });
  }
  return out;
}
