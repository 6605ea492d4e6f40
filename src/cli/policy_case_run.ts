/**
 * Running rule test cases: a given-values case through a fresh
 * {@linkcode PolicyEngine} (its sparse rows built from the values, as one
 * frame of one request; no encoder runs), the monitor such cases need
 * (compiled policies, encoder widths and labels, read without running the
 * encoders), and the request overrides of recorded-trace cases.
 *
 * @module
 */
import { ConfigError } from "../config/errors.ts";
import { monitorConfigFromSource } from "../config/monitor.ts";
import { loadPolicyFileDef } from "../config/policy_file.ts";
import { loadYamlSource } from "../config/yaml_source.ts";
import type { Frame } from "../core/frame/format.ts";
import { compilePolicySet } from "../core/policy/compile.ts";
import type { CompiledPolicySet, CompiledTest, SignalInfo } from "../core/policy/compiled.ts";
import { type Firing, PolicyEngine } from "../core/policy/engine.ts";
import type { SparseLatents } from "../core/sae.ts";
import { monitorSignals } from "./monitor_signals.ts";
import { attachDecoders } from "./policy_lint_family.ts";
import type { CaseRequest, GivenCase } from "./policy_cases.ts";

/**
 * The engine's rows for a case: per encoder the set reads, one
 * {@linkcode SparseLatents} per token (an SAE's non-zero latents; a
 * probe's every score, 0 where not given).
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet, SignalInfo } from "../core/policy/compiled.ts";
 * import type { GivenCase } from "./policy_cases.ts";
 * import { caseRows } from "./policy_case_run.ts";
 * declare const set: CompiledPolicySet, c: GivenCase, signals: Map<string, SignalInfo>;
 * caseRows(c, set, signals).get("res")?.length === c.length; // true
 * ```
 */
export function caseRows(
  c: GivenCase,
  set: CompiledPolicySet,
  signals: ReadonlyMap<string, SignalInfo>,
): Map<string, SparseLatents[]> {
  const rows = new Map<string, SparseLatents[]>();
  for (const encoder of set.encoderIds) {
    const given = c.values.get(encoder) ?? new Map<number, number[]>();
    const probe = signals.get(encoder)?.kind === "probe";
    const width = signals.get(encoder)?.dSae ?? 0;
    const per: SparseLatents[] = [];
    for (let pos = 0; pos < c.length; pos++) {
      const idx = probe
        ? [...Array(width).keys()]
        : [...given.keys()].filter((i) => given.get(i)![pos] !== 0).sort((a, b) => a - b);
      per.push({
        indices: Uint32Array.from(idx),
        values: Float32Array.from(idx, (i) => given.get(i)?.[pos] ?? 0),
      });
    }
    rows.set(encoder, per);
  }
  return rows;
}

/**
 * Run a given-values case through a fresh {@linkcode PolicyEngine}: one
 * frame holding every token, from position 0.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet, SignalInfo } from "../core/policy/compiled.ts";
 * import type { GivenCase } from "./policy_cases.ts";
 * import { runGivenCase } from "./policy_case_run.ts";
 * declare const set: CompiledPolicySet, c: GivenCase, signals: Map<string, SignalInfo>;
 * runGivenCase({ set, signals, case: c, model: "gpt2" }).map((f) => f.rule.id);
 * ```
 */
export function runGivenCase(
  opts: {
    set: CompiledPolicySet;
    signals: ReadonlyMap<string, SignalInfo>;
    case: GivenCase;
    /** Model when the case gives none (the monitor's). */
    model: string;
  },
): Firing[] {
  const { set, case: c } = opts;
  const engine = new PolicyEngine(set, { now: () => 0 });
  const r = c.request;
  return engine.evaluate({
    ctx: {
      requestId: r.id,
      model: r.model ?? opts.model,
      ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
      ...(r.meta !== undefined ? { meta: r.meta } : {}),
      ...(r.phase !== undefined ? { phase: r.phase } : {}),
    },
    position: 0,
    tokens: c.length,
    latents: caseRows(c, set, opts.signals),
    firstRow: 0,
    ...(c.tokens ? { tokenText: c.tokens } : {}),
  });
}

/**
 * A test's signal value per token of a case (0 where not given), for the
 * condition table.
 *
 * @example
 * ```ts
 * import type { GivenCase } from "./policy_cases.ts";
 * import { caseSignal } from "./policy_case_run.ts";
 * declare const c: GivenCase;
 * caseSignal(c, { encoder: "res", kind: "latent", index: 2, pool: { kind: "token" }, trigger: true });
 * ```
 */
export function caseSignal(c: GivenCase, t: CompiledTest): number[] {
  const of = (index: number) => c.values.get(t.encoder)?.get(index);
  if (!t.family) return of(t.index) ?? new Array<number>(c.length).fill(0);
  // a family's value per token, from its members' given values (as the engine combines them)
  const { members, weights, combine } = t.family;
  const out = new Array<number>(c.length).fill(0);
  members.forEach((m, k) => {
    const values = of(m);
    if (!values) return;
    for (let pos = 0; pos < c.length; pos++) {
      const v = (values[pos] ?? 0) * weights[k];
      if (values[pos]) out[pos] = combine === "sum" ? out[pos] + v : Math.max(out[pos], v);
    }
  });
  return out;
}

/**
 * A recorded frame as a test's `request:` override makes it: tenant,
 * model and metadata keys replaced (metadata merged key by key), on every
 * request or only on `request.id`.
 *
 * @example
 * ```ts
 * import { type Frame, META_KEY } from "../core/frame/format.ts";
 * import { overrideFrame } from "./policy_case_run.ts";
 * declare const frame: Frame;
 * overrideFrame(frame, { tenant: "internal-redteam" }).tenant; // "internal-redteam"
 * ```
 */
export function overrideFrame(frame: Frame, r: CaseRequest): Frame {
  if (r.id !== undefined && r.id !== frame.requestId) return frame;
  return {
    ...frame,
    ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
    ...(r.model !== undefined ? { model: r.model } : {}),
    ...(r.meta !== undefined ? { meta: { ...frame.meta, ...r.meta } } : {}),
  };
}

/** What given-values cases need of a monitor: its compiled policies and encoders' shapes. */
export interface CaseMonitor {
  set: CompiledPolicySet;
  signals: Map<string, SignalInfo>;
  /** The monitor's model (a case's default). */
  model: string;
}

/**
 * Read the monitor at `path`, the widths and labels of its SAEs and probes
 * (without running them: `./monitor_signals.ts`) and compile its policy
 * files against them. Throws {@linkcode ConfigError} for an invalid
 * monitor or policy, `PolicyCompileError` for a rule that does not compile.
 *
 * @example
 * ```ts
 * import { loadCaseMonitor } from "./policy_case_run.ts";
 * const m = await loadCaseMonitor("policies/testdata/monitor.yaml");
 * m.set.rules.map((r) => r.id);
 * ```
 */
export async function loadCaseMonitor(path: string): Promise<CaseMonitor> {
  const src = await loadYamlSource(path);
  const config = monitorConfigFromSource(src);
  const { signals, issues } = await monitorSignals(config, src);
  if (issues.length > 0) throw new ConfigError(issues);
  const files = [];
  for (const f of config.policies) files.push(await loadPolicyFileDef(f));
  await attachDecoders(config, files, signals); // family tests weigh members by decoder cosine
  return { set: compilePolicySet(files, signals), signals, model: config.model };
}
