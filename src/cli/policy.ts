/**
 * `latentwatch policy lint <path>... [--monitor <monitor.yaml>] [--json] [--strict]`:
 * validate policy files (v1 and v2) and compile them, printing every error
 * and warning as `file:line:col: error|warning: reason`.
 *
 * - A path is a policy file or a folder: every `*.yaml`/`*.yml` under it,
 *   except rule tests (`*.test.yaml`), `testdata/` folders and monitor files
 *   (`monitor:` and `saes:`), each passed over with a note line.
 * - Schema errors and semantic errors come in one run, sorted by file, line
 *   and column: the rules of a file that did validate are still compiled.
 * - With `--monitor`, the files are compiled against the SAEs and probes
 *   that monitor loads: SAE widths (`d_sae` from an SAELens `cfg.json`
 *   without reading the weights; other formats are loaded), labels
 *   (Neuronpedia exports) and probe widths. With `--monitor` and no paths,
 *   the monitor's own policy files are linted.
 * - Without `--monitor`, the files are compiled against stand-in encoders
 *   inferred from the files themselves, so every check that does not need
 *   the real SAEs runs (names, macros, lists, triggers, thresholds,
 *   conditions that never hold, unused macros); the checks that do (unknown
 *   SAE, latent out of range, unknown label) need `--monitor`.
 *
 * Exit status: 0 when there is no error (warnings alone are fine unless
 * `--strict`), 1 on errors, 2 on bad usage. `policy test` and `policy
 * calibrate` are dispatched to `./policy_tools.ts`. The paths to lint are
 * expanded in `./policy_paths.ts`, the stand-in encoders made in
 * `./policy_stand_ins.ts`.
 *
 * @module
 */
import { ConfigError, type ConfigIssue, oneLine, sortIssues } from "../config/errors.ts";
import { type MonitorConfig, monitorConfigFromSource } from "../config/monitor.ts";
import { policyFileDefFromSource, validRulesOf } from "../config/policy_file.ts";
import { loadYamlSource, type YamlSource } from "../config/yaml_source.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import { absorptionWarnings, attachDecoders } from "./policy_lint_family.ts";
import {
  compilePolicySet,
  PolicyCompileError,
  type PolicyProblem,
  type SignalInfo,
} from "../core/policy/compile.ts";
import { parseCommandArgs, usageError } from "./common.ts";
import { monitorSignals } from "./monitor_signals.ts";
import {
  isMonitorSource,
  type LintPath,
  policyPathsWithSkips,
  type SkippedPath,
} from "./policy_paths.ts";
import { NEEDS_MONITOR, standInSignals } from "./policy_stand_ins.ts";

export { policyPaths, type SkippedPath } from "./policy_paths.ts";

const USAGE =
  `usage: latentwatch policy lint <path>... [--monitor <monitor.yaml>] [--json] [--strict]
       latentwatch policy test <path>...            (rule tests; see policy test --help)
       latentwatch policy calibrate --monitor ...   (thresholds; see policy calibrate --help)

  Validate and compile policy files. A path is a file or a folder (every
  *.yaml / *.yml under it except *.test.yaml, testdata/ folders and monitor
  files, each noted as skipped).

  --monitor <file>  compile against that monitor's SAEs and probes (unknown SAE
                    or probe, latent out of range, unknown label); with no
                    paths, lint the monitor's own policy files
  --json            one JSON document on stdout instead of lines on stderr
  --strict          warnings fail too (exit 1)

  Every problem is printed as file:line:col: error|warning: reason.
  Exit status: 0 without errors (warnings alone unless --strict), 1 on errors,
  2 on bad usage.`;

/** One lint finding, as printed and as in `--json`. */
export interface LintFinding {
  file: string;
  line: number;
  col: number;
  severity: "error" | "warning";
  /** `invalid` (syntax or schema), `atlas-tag`, `monitor`, or a compile problem/warning code. */
  code: string;
  rule?: string;
  reason: string;
}

/** What `policy lint` found. */
export interface LintReport {
  ok: boolean;
  files: string[];
  rules: number;
  monitor: string | null;
  errors: LintFinding[];
  warnings: LintFinding[];
  /** What a folder held that is not a policy (monitor files, rule tests, `testdata/`), not linted. */
  skipped: SkippedPath[];
}

/**
 * Run `policy <subcommand> ...` and return the exit code.
 *
 * @example
 * ```ts
 * const code = await runPolicyCommand(["lint", "policies/", "--strict"]);
 * ```
 */
export async function runPolicyCommand(args: string[]): Promise<number> {
  const sub = args[0];
  if (sub === "test" || sub === "calibrate") {
    // owned by the offline tools; loaded only when asked for (they pull in onnxruntime)
    const { runPolicyTool } = await import("./policy_tools.ts");
    return await runPolicyTool(sub, args.slice(1));
  }
  const parsed = parseCommandArgs("latentwatch policy", USAGE, args, {
    monitor: { type: "string" },
    json: { type: "boolean" },
    strict: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const [cmd, ...paths] = parsed.positionals;
  if (cmd !== "lint") {
    return usageError(
      "latentwatch policy",
      USAGE,
      cmd ? `unknown subcommand '${cmd}'` : "missing subcommand",
    );
  }
  if (paths.length === 0 && parsed.values.monitor === undefined) {
    return usageError(
      "latentwatch policy lint",
      USAGE,
      "expected at least one policy file or folder",
    );
  }
  const report = await lintPolicies(paths, { monitor: parsed.values.monitor });
  const failed = !report.ok || (parsed.values.strict === true && report.warnings.length > 0);
  if (parsed.values.json) {
    console.log(JSON.stringify({ ...report, ok: !failed }, null, 2));
  } else {
    printReport(report);
  }
  return failed ? 1 : 0;
}

/** Findings in file, line, column order. */
function byPosition(a: LintFinding, b: LintFinding): number {
  return a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col;
}

function printReport(r: LintReport): void {
  const all = [...r.errors, ...r.warnings].sort(byPosition);
  for (const f of all) console.error(formatFinding(f));
  for (const n of r.skipped) console.error(`${n.file}: note: skipped, ${oneLine(n.reason)}`);
  const warned = r.warnings.length > 0 ? `, ${r.warnings.length} warning(s)` : "";
  if (r.errors.length > 0) {
    const nFiles = new Set(all.map((f) => f.file)).size;
    console.error(`policy lint: ${r.errors.length} error(s)${warned} in ${nFiles} file(s)`);
    return;
  }
  const against = r.monitor !== null ? `, compiled against monitor '${r.monitor}'` : "";
  console.log(
    `policy lint: OK, ${r.files.length} file(s), ${r.rules} rule(s)${warned}${against}`,
  );
}

/**
 * One finding as `file:line:col: error|warning: [rule 'id': ]reason`.
 *
 * @example
 * ```ts
 * formatFinding({ file: "p.yaml", line: 3, col: 5, severity: "warning", code: "unused-macro",
 *   reason: "macro 'm' is defined but no rule uses it" });
 * // "p.yaml:3:5: warning: macro 'm' is defined but no rule uses it"
 * ```
 */
export function formatFinding(f: LintFinding): string {
  const rule = f.rule !== undefined ? `rule '${f.rule}': ` : "";
  // one line per finding, whatever the reason quotes from the file
  return `${f.file}:${f.line}:${f.col}: ${f.severity}: ${oneLine(rule + f.reason)}`;
}

/**
 * Lint policy files (or folders), optionally against a monitor. Never
 * throws: every problem, even one latentwatch did not foresee (reported
 * with code `internal` at the file's first line), lands in the report as a
 * `file:line:col` finding. Work is bounded by the policy limits
 * (`src/core/policy/limits.ts`): nothing is sized by a latent index.
 *
 * @example
 * ```ts
 * const report = await lintPolicies(["policies/demo.yaml"], { monitor: "monitors/demo.yaml" });
 * report.ok; // true
 * ```
 */
export async function lintPolicies(
  paths: string[],
  opts: { monitor?: string } = {},
): Promise<LintReport> {
  const errors: LintFinding[] = [];
  const warnings: LintFinding[] = [];
  const configErrors = (issues: readonly ConfigIssue[], code = "invalid") => {
    for (const i of sortIssues(issues)) errors.push({ ...i, severity: "error", code });
  };

  let monitor: MonitorConfig | undefined;
  let signals: Map<string, SignalInfo> | undefined;
  if (opts.monitor !== undefined) {
    try {
      const src = await loadYamlSource(opts.monitor);
      monitor = monitorConfigFromSource(src);
      const loaded = await monitorSignals(monitor, src);
      signals = loaded.signals;
      configErrors(loaded.issues, "monitor");
    } catch (err) {
      if (err instanceof ConfigError) configErrors(err.issues, "monitor");
      else errors.push(internal(opts.monitor, err));
    }
    if (paths.length === 0 && monitor) paths = monitor.policies;
  }

  let found: LintPath[] = [];
  const skipped: SkippedPath[] = [];
  try {
    const walked = await policyPathsWithSkips(paths);
    found = walked.files;
    skipped.push(...walked.skipped);
  } catch (err) {
    errors.push(internal(paths[0] ?? ".", err));
  }
  const files: string[] = [];
  const defs: PolicyFileDef[] = [];
  for (const { path: file, inFolder } of found) {
    let src: YamlSource | undefined;
    try {
      src = await loadYamlSource(file);
      if (inFolder && isMonitorSource(src)) {
        skipped.push({ file, reason: "a monitor file (monitor: and saes:), not a policy" });
        continue;
      }
      files.push(file);
      const parsed = policyFileDefFromSource(src);
      defs.push(parsed.def);
      for (const w of parsed.warnings) {
        warnings.push({ ...w, severity: "warning", code: "atlas-tag" });
      }
    } catch (err) {
      if (src === undefined) files.push(file);
      if (!(err instanceof ConfigError)) {
        errors.push(internal(file, err));
        continue;
      }
      configErrors(err.issues);
      // the rules that did validate still get the semantic checks, in this same run
      try {
        const partial = src && validRulesOf(src);
        if (partial) {
          defs.push(partial.def);
          for (const w of partial.warnings) {
            warnings.push({ ...w, severity: "warning", code: "atlas-tag" });
          }
        }
      } catch (e) {
        errors.push(internal(file, e));
      }
    }
  }

  // A monitor that failed to load is reported; the files are still checked with stand-ins.
  const real = signals !== undefined && errors.every((e) => e.code !== "monitor");
  const against = real ? signals! : standInSignals(defs);
  if (real && monitor) await attachDecoders(monitor, defs, against);
  const finding = (p: PolicyProblem<string>, severity: LintFinding["severity"]): LintFinding => ({
    file: p.source.file,
    line: p.source.line,
    col: p.source.col ?? 1,
    severity,
    code: p.code,
    ...(p.rule !== undefined ? { rule: p.rule } : {}),
    reason: p.reason,
  });
  try {
    const set = compilePolicySet(defs, against);
    for (const w of set.warnings) warnings.push(finding(w, "warning"));
  } catch (err) {
    if (!(err instanceof PolicyCompileError)) {
      errors.push(internal(files[0] ?? ".", err));
      return report();
    }
    for (const p of err.problems) {
      if (!real && NEEDS_MONITOR.has(p.code)) continue;
      errors.push(finding(p, "error"));
    }
    for (const w of err.warnings) warnings.push(finding(w, "warning"));
  }
  if (real) {
    for (const w of absorptionWarnings(defs, against)) warnings.push(finding(w, "warning"));
  }
  return report();

  function report(): LintReport {
    return {
      ok: errors.length === 0,
      files,
      rules: defs.reduce((n, d) => n + d.rules.length, 0),
      monitor: monitor?.monitor ?? null,
      errors: errors.sort(byPosition),
      warnings: warnings.sort(byPosition),
      skipped,
    };
  }
}

/** A failure latentwatch did not foresee, as a finding at the file's first line. */
function internal(file: string, err: unknown): LintFinding {
  const e = err instanceof Error ? err : new Error(String(err));
  return {
    file,
    line: 1,
    col: 1,
    severity: "error",
    code: "internal",
    reason: `expected to check this file, found an unexpected ${e.name}: ${e.message}`,
  };
}
