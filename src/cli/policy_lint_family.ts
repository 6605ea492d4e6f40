/**
 * `policy lint --monitor`'s absorption check: a rule reading a single SAE
 * latent may miss the tokens where other latents have absorbed its concept
 * (docs/policies.md, "Latent families and absorption"). With the monitor's
 * SAE decoders loaded, each such test whose latent has other latents at a
 * decoder cosine of at least {@linkcode LINT_ABSORPTION_COSINE} gets a
 * warning at the test's `file:line:col` naming them and the `family:` form
 * to use.
 *
 * @module
 */
import type { Condition, PolicyFileDef, SignalTest } from "../core/policy/ast.ts";
import type { PolicyProblem, SignalInfo } from "../core/policy/compile.ts";
import { familyMembers } from "../core/family.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { loadMonitorSae, saeDecoderCosines } from "../pipeline/models.ts";
import { Logger } from "../shared/log.ts";

/** Decoder cosine at or above which another latent counts as a likely absorber. */
export const LINT_ABSORPTION_COSINE = 0.5;

/** At most this many members are suggested per test. */
const SUGGESTED_MEMBERS = 8;

/**
 * Load the decoders of the monitor's SAEs that `defs` read, and give their
 * signals `decoderCosines` (family tests and the absorption check need it).
 * An SAE that fails to load keeps its signal as it was (the monitor check
 * reports loading problems).
 *
 * @example
 * ```ts
 * import type { MonitorConfig } from "../config/monitor.ts";
 * import type { PolicyFileDef } from "../core/policy/ast.ts";
 * import type { SignalInfo } from "../core/policy/compile.ts";
 * declare const config: MonitorConfig, defs: PolicyFileDef[], signals: Map<string, SignalInfo>;
 * await attachDecoders(config, defs, signals);
 * ```
 */
export async function attachDecoders(
  config: MonitorConfig,
  defs: PolicyFileDef[],
  signals: Map<string, SignalInfo>,
): Promise<void> {
  const read = new Set(singleLatentTests(defs).map((t) => t.sae));
  for (const d of defs) {
    for (const c of conditionsOf(d)) {
      walk(c, (t) => {
        if (t.signal.kind === "family") read.add(t.signal.sae);
      });
    }
  }
  for (const s of config.saes) {
    const info = signals.get(s.id);
    if (!read.has(s.id) || !info || info.kind !== "sae") continue;
    try {
      const sae = await loadMonitorSae(s, new Logger({ quiet: true }));
      signals.set(s.id, { ...info, decoderCosines: saeDecoderCosines(sae) });
    } catch {
      // reported by the monitor check; family tests then report 'no-decoder'
    }
  }
}

/**
 * Warnings (code `absorption`) for tests on one latent (`latent:` or `label:`) whose decoder has
 * near neighbours: the latents with a decoder cosine of at least `minCosine`
 * with it, and the family form that reads them too.
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "../core/policy/ast.ts";
 * import type { SignalInfo } from "../core/policy/compile.ts";
 * declare const defs: PolicyFileDef[], signals: Map<string, SignalInfo>;
 * for (const w of absorptionWarnings(defs, signals)) console.log(w.reason);
 * ```
 */
export function absorptionWarnings(
  defs: PolicyFileDef[],
  signals: ReadonlyMap<string, SignalInfo>,
  minCosine = LINT_ABSORPTION_COSINE,
): PolicyProblem<"absorption">[] {
  const out: PolicyProblem<"absorption">[] = [];
  for (const t of singleLatentTests(defs)) {
    const info = signals.get(t.sae);
    if (info?.kind !== "sae" || !info.decoderCosines) continue;
    const index = typeof t.index === "number" ? t.index : labelled(info, t.index);
    if (index === undefined || index >= info.dSae) continue;
    const others = familyMembers(info.decoderCosines(index), { minCosine })
      .filter((m) => m.index !== index);
    if (others.length === 0) continue;
    const shown = others.slice(0, SUGGESTED_MEMBERS);
    const name = (i: number) => info.labels?.has(i) ? ` '${info.labels.get(i)}'` : "";
    out.push({
      source: t.test.source,
      ...(t.rule !== undefined ? { rule: t.rule } : {}),
      code: "absorption",
      reason: `latent ${index}${name(index)} of SAE '${t.sae}' has ${others.length} ` +
        `latent${others.length > 1 ? "s" : ""} whose decoder carries its direction (cosine ≥ ` +
        `${minCosine}): ${
          shown.map((m) => `${m.index}${name(m.index)} (${m.cosine.toFixed(2)})`).join(", ")
        }${others.length > shown.length ? ` and ${others.length - shown.length} more` : ""}; ` +
        "where they absorb it this latent is silent and the rule misses the token. Consider " +
        `'family: {of: ${index}, members: [${
          [index, ...shown.map((m) => m.index)].join(", ")
        }]}' in place of '${
          typeof t.index === "number" ? `latent: ${index}` : `label: "${t.index}"`
        }' (see latentwatch sae family)`,
    });
  }
  return out;
}

/** The one latent whose label is `label` (ignoring case and outer spaces), if exactly one. */
function labelled(info: SignalInfo, label: string): number | undefined {
  const want = label.trim().toLowerCase();
  const found = [...info.labels ?? []].filter(([, l]) => l.trim().toLowerCase() === want);
  return found.length === 1 ? found[0][0] : undefined;
}

interface LatentTest {
  sae: string;
  /** The latent, or its label (resolved against the SAE's labels). */
  index: number | string;
  test: SignalTest;
  rule?: string;
}

function conditionsOf(d: PolicyFileDef): Condition[] {
  return [...d.rules.map((r) => r.condition), ...d.macros.map((m) => m.condition)];
}

function walk(c: Condition, f: (t: SignalTest) => void): void {
  switch (c.kind) {
    case "all":
    case "any":
      return c.of.forEach((x) => walk(x, f));
    case "not":
      return walk(c.of, f);
    case "macro":
      return;
    default:
      f(c);
  }
}

/** Every `latent:` test written in rules and macros (outside `not`, too: lint looks at all). */
function singleLatentTests(defs: PolicyFileDef[]): LatentTest[] {
  const out: LatentTest[] = [];
  for (const d of defs) {
    const add = (rule: string | undefined) => (t: SignalTest) => {
      if (t.signal.kind === "latent" || t.signal.kind === "label") {
        const index = t.signal.kind === "latent" ? t.signal.index : t.signal.label;
        out.push({ sae: t.signal.sae, index, test: t, rule });
      }
    };
    for (const r of d.rules) walk(r.condition, add(r.id));
    for (const m of d.macros) walk(m.condition, add(undefined));
  }
  return out;
}
