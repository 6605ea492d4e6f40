/**
 * The rule workbench: lint a policy text against the monitor's real SAEs
 * (the problems and `file:line:col: severity: reason` lines `policy lint`
 * prints), preview it over the loaded traces (firings, per-token condition
 * values, the alerts serve would build), and a threshold curve (firing
 * rate on benign requests, detection on requests marked positive).
 *
 * @module
 */
import { ConfigError, oneLine, sortIssues } from "../config/errors.ts";
import { policyFileDefFromSource } from "../config/policy_file.ts";
import { parseYamlSource } from "../config/yaml_source.ts";
import type { Alert } from "../core/alert.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import {
  type CompiledPolicySet,
  compilePolicySet,
  PolicyCompileError,
  type PolicyProblem,
} from "../core/policy/compile.ts";
import { conditionLeaves, pooledValues, signalName } from "../core/policy/condition_values.ts";
import { PooledCollector, triggerTest } from "../traces/calibrate.ts";
import type { TraceStore } from "./trace_source.ts";
import { signalValues } from "./views.ts";

/** One lint problem. */
export interface LintProblem {
  file: string;
  line: number;
  col: number;
  severity: "error" | "warning";
  rule?: string;
  message: string;
  /** As `policy lint` prints it: `file:line:col: severity: [rule 'id': ]reason`. */
  formatted: string;
}

function problem(
  p: { file: string; line: number; col?: number; reason: string; rule?: string },
  severity: LintProblem["severity"],
): LintProblem {
  const rule = p.rule !== undefined ? `rule '${p.rule}': ` : "";
  return {
    file: p.file,
    line: p.line,
    col: p.col ?? 1,
    severity,
    ...(p.rule !== undefined ? { rule: p.rule } : {}),
    message: p.reason,
    formatted: `${p.file}:${p.line}:${p.col ?? 1}: ${severity}: ${oneLine(rule + p.reason)}`,
  };
}

/** What linting a policy text gave: its problems, and the compiled set when there is no error. */
export interface LintOutcome {
  problems: LintProblem[];
  set?: CompiledPolicySet;
}

/**
 * Lint `text` as the policy file `file` of the monitor (its other policy
 * files as loaded), against the monitor's SAEs, probes and labels.
 *
 * @example
 * ```ts
 * import type { TraceStore } from "./trace_source.ts";
 * import { lintPolicyText } from "./policy_preview.ts";
 * declare const store: TraceStore;
 * lintPolicyText(store, "version: 2\nrules: []\n", "p.yaml").problems; // []
 * ```
 */
export function lintPolicyText(store: TraceStore, text: string, file: string): LintOutcome {
  const m = store.monitor;
  let def: PolicyFileDef;
  const problems: LintProblem[] = [];
  try {
    const parsed = policyFileDefFromSource(parseYamlSource(text, file));
    def = parsed.def;
    for (const w of parsed.warnings) problems.push(problem(w, "warning"));
  } catch (err) {
    if (err instanceof ConfigError) {
      return { problems: sortIssues(err.issues).map((i) => problem(i, "error")) };
    }
    return { problems: [problem({ file, line: 1, col: 1, reason: String(err) }, "error")] };
  }
  const files = m.files.filter((f) => f.file !== file);
  const at = (p: PolicyProblem<string>) => ({ ...p.source, reason: p.reason, rule: p.rule });
  try {
    const set = compilePolicySet([...files, def], m.signals);
    for (const w of set.warnings) problems.push(problem(at(w), "warning"));
    return { problems, set };
  } catch (err) {
    if (!(err instanceof PolicyCompileError)) throw err;
    for (const p of err.problems) problems.push(problem(at(p), "error"));
    for (const w of err.warnings) problems.push(problem(at(w), "warning"));
    return { problems };
  }
}

/** One condition of a rule, valued per token of one request. */
export interface ConditionTrace {
  rule: string;
  /** The condition's name in the rule (as alerts list it: `conditions[].name`). */
  condition: string;
  /** What it reads: `demo-res latent 0 "prompt injection"`. */
  name: string;
  op: "above" | "below";
  threshold: number;
  /** The value the test compares with `threshold`, per token: the signal pooled as the engine pools it. */
  values: number[];
  /** The signal's own value per token (before pooling). */
  raw: number[];
  /** Positions where the rule fired in this request. */
  firedAt: number[];
}

/** A request in a preview. */
export interface PreviewRequest {
  id: string;
  fired: boolean;
  alerts: Alert[];
  tokens: string[];
  conditions: ConditionTrace[];
}

/** A point of a threshold curve. */
export interface CurvePoint {
  threshold: number;
  /** Fraction of benign requests (not marked positive) the rule's trigger test passes on. */
  benignRate: number;
  /** Fraction of positive requests it passes on (null without positives). */
  detection: number | null;
}

/** What a preview gave. */
export interface Preview {
  problems: LintProblem[];
  /** Those that fire first, then quiet ones, at most {@linkcode PREVIEW_REQUESTS}. */
  requests: PreviewRequest[];
  /** How many requests were previewed, fired, and are in `requests`. */
  totals?: { requests: number; fired: number; shown: number };
  curve?: { rule: string; points: CurvePoint[] };
}

/** Options of {@linkcode previewPolicy}. */
export interface PreviewOptions {
  /** Rule to draw a threshold curve for. */
  curve?: { rule: string };
  /** Request ids that are positives. */
  positives?: readonly string[];
}

/** Thrown for a preview asked of something it cannot give (the API answers 400). */
export class PreviewRequestError extends Error {
  override name = "PreviewRequestError";
}

/** Most requests one preview returns in detail (those that fire first). */
export const PREVIEW_REQUESTS = 500;
/** Most thresholds on a curve. */
export const CURVE_POINTS = 200;

/**
 * Lint `text` and, without errors, evaluate it over the loaded traces.
 *
 * @example
 * ```ts
 * import type { TraceStore } from "./trace_source.ts";
 * import { previewPolicy } from "./policy_preview.ts";
 * declare const store: TraceStore;
 * const p = await previewPolicy(store, "version: 2\nrules: []\n", "p.yaml");
 * p.requests.filter((r) => r.fired).length; // 0
 * ```
 */
export async function previewPolicy(
  store: TraceStore,
  text: string,
  file: string,
  opts: PreviewOptions = {},
): Promise<Preview> {
  const lint = lintPolicyText(store, text, file);
  if (!lint.set) return { problems: lint.problems, requests: [] };
  const set = lint.set;
  const own = set.rules.filter((r) => r.def.source.file === file);
  const ev = await store.evaluate(set);
  const requests: PreviewRequest[] = [];
  for (const r of store.requests.values()) {
    const firings = ev.byRequest.get(r.id) ?? [];
    const conditions: ConditionTrace[] = [];
    for (const rule of own) {
      const firedAt = firings.filter((f) => f.rule === rule.id).flatMap((f) => f.positions);
      for (const leaf of conditionLeaves(rule.condition)) {
        const t = rule.tests[leaf.test];
        const raw = signalValues(store, r, t.encoder, t.index, t.family);
        conditions.push({
          rule: rule.id,
          condition: rule.conditions[leaf.cond].name,
          name: signalName(t),
          op: leaf.op,
          threshold: leaf.threshold,
          values: pooledValues(t, raw),
          raw,
          firedAt,
        });
      }
    }
    requests.push({
      id: r.id,
      fired: firings.some((f) => own.some((o) => o.id === f.rule)),
      alerts: firings.flatMap((f) => f.alert ? [f.alert] : []),
      tokens: r.tokens,
      conditions,
    });
  }
  // a bounded answer: every request that fires (up to PREVIEW_REQUESTS), then quiet ones
  const fired = requests.filter((r) => r.fired);
  const quiet = requests.filter((r) => !r.fired);
  const shown = [...fired, ...quiet].slice(0, PREVIEW_REQUESTS);
  const out: Preview = {
    problems: lint.problems,
    requests: shown,
    totals: { requests: requests.length, fired: fired.length, shown: shown.length },
  };
  if (opts.curve) out.curve = thresholdCurve(store, set, opts.curve.rule, opts.positives ?? []);
  return out;
}

/**
 * Firing rate on benign requests and detection on positives of `ruleId`'s
 * trigger test (pooled as the engine pools it) at each threshold where a
 * request's extreme value changes the answer.
 */
export function thresholdCurve(
  store: TraceStore,
  set: CompiledPolicySet,
  ruleId: string,
  positives: readonly string[],
): { rule: string; points: CurvePoint[] } {
  const rule = set.rules.find((r) => r.id === ruleId);
  if (!rule) {
    throw new PreviewRequestError(
      `curve: no rule '${ruleId}' (expected one of: ${set.rules.map((r) => r.id).join(", ")})`,
    );
  }
  const trigger = triggerTest(rule);
  if (!trigger) throw new PreviewRequestError(`curve: rule '${ruleId}' has no threshold test`);
  const unknown = positives.filter((p) => !store.requests.has(p));
  if (unknown.length > 0) {
    throw new PreviewRequestError(
      `positives: no request ${unknown.map((u) => `'${u}'`).join(", ")}`,
    );
  }
  const collector = new PooledCollector(trigger, rule.scope);
  for (const b of store.batches) {
    let row = 0;
    for (const f of b.frames) {
      collector.push(f.requestId, f.position, f.tokens, f.phase, b.latents, row);
      row += f.tokens;
      if (f.endOfRequest) collector.endRequest(f.requestId);
    }
  }
  const pos = new Set(positives);
  const above = trigger.op === "above";
  const benign = [...store.requests.keys()].filter((id) => !pos.has(id));
  const extremes = [...collector.requestValues.values()].filter(Number.isFinite);
  // at most CURVE_POINTS thresholds (quantiles of the extremes): the cost stays
  // linear in the requests whatever their number
  const sorted = [...new Set(extremes)].sort((a, b) => a - b);
  const step = Math.max(1, Math.ceil(sorted.length / CURVE_POINTS));
  const picked = sorted.filter((_, i) => i % step === 0 || i === sorted.length - 1);
  const thresholds = [...new Set([trigger.threshold, ...picked])].sort((a, b) => a - b);
  const passes = (id: string, t: number) => {
    const v = collector.requestValues.get(id);
    return v !== undefined && (above ? v > t : v < t);
  };
  const rate = (ids: readonly string[], t: number) =>
    ids.length === 0 ? 0 : ids.filter((id) => passes(id, t)).length / ids.length;
  return {
    rule: ruleId,
    points: thresholds.map((t) => ({
      threshold: t,
      benignRate: rate(benign, t),
      detection: pos.size > 0 ? rate([...pos], t) : null,
    })),
  };
}
