/**
 * `latentwatch policy test` and `latentwatch policy calibrate`: the offline
 * policy tools, run over recorded traces (`docs/traces.md`).
 *
 * - `policy test <path>...`: run the rule tests in `<name>.test.yaml` files
 *   (a trace, a monitor, the alerts expected and those expected not to
 *   fire), print PASS/FAIL per test and a summary like `opa test`.
 * - `policy calibrate --monitor <file> --traces <t>... --target-fpr <f>`:
 *   suggest each rule's threshold for a false-positive target from benign
 *   traces, with the alert rates at the current and suggested thresholds.
 *
 * Both are documented in `docs/traces.md`.
 *
 * @module
 */
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../config/errors.ts";
import { expectMessage, loadYamlSource, validateYaml } from "../config/yaml_source.ts";
import {
  describeTrigger,
  passRate,
  PooledCollector,
  suggestThreshold,
  triggerTest,
} from "../traces/calibrate.ts";
import {
  type OfflineMonitor,
  type ReplayFiring,
  type ReplayStats,
  replayTrace,
} from "../traces/offline.ts";
import { TraceFormatError } from "../traces/format.ts";
import {
  commandFailed,
  filesUnder,
  loadMonitorAt,
  parseCommandArgs,
  usageError,
} from "./common.ts";

const TEST_USAGE = `usage: latentwatch policy test <path>... [--run <regex>] [--verbose]

  Run rule tests. A path is a test file (<name>.test.yaml), a policy file
  (its <name>.test.yaml beside it), or a folder (every *.test.yaml under it).
  Each test replays a recorded trace through a monitor and checks the alerts
  expected (rule, request, optionally token positions) and those expected not
  to fire. Test files are described in docs/traces.md.

  --run <regex>   only the tests whose name matches
  --verbose       also list every firing of each replay

  Exit status: 0 when every test passes, 1 when one fails or a test file is
  invalid, 2 on bad usage.`;

const CALIBRATE_USAGE =
  `usage: latentwatch policy calibrate --monitor <file> --traces <trace>... --target-fpr <f>
                                   [--per token|request] [--json]

  From BENIGN traces, suggest each rule's threshold for a target false-positive
  rate, per token (fraction of tokens on which the rule's test holds) and per
  request (fraction of requests on which it holds at least once), and report
  the expected alert rates at the current and suggested thresholds. Composite
  rules are calibrated on their trigger test (said in the output).

  --monitor <file>    the monitor whose SAEs, probes and policies to use
  --traces <t>...     benign trace files (repeat --traces or list them after it)
  --target-fpr <f>    false-positive target in (0, 1), e.g. 0.001
  --per token|request suggest for one of the two only (default: both)
  --json              one JSON document on stdout

  Exit status: 0 on success, 1 on errors (unreadable trace, bad monitor), 2 on bad usage.`;

/**
 * Run `policy test|calibrate ...` and return the exit code. Called by
 * `src/cli/policy.ts`.
 *
 * @example
 * ```ts
 * const code = await runPolicyTool("test", ["policies/demo.test.yaml"]); // 0: every test passed
 * ```
 */
export async function runPolicyTool(sub: "test" | "calibrate", args: string[]): Promise<number> {
  return sub === "test" ? await runTests(args) : await runCalibrate(args);
}

// ---------------------------------------------------------------------------
// policy test

const NAME_ERR = expectMessage("a non-empty string");
const RULE_ID = z.string().min(1, { error: NAME_ERR });
const POSITIONS = expectMessage("a list of token positions (integers ≥ 0)");

/** The zod schema of a rule test file (`<name>.test.yaml`). */
export const PolicyTestFileSchema = z.strictObject({
  /** Defaults for every test of the file; relative to the test file. */
  trace: z.string().min(1, { error: NAME_ERR }).optional(),
  monitor: z.string().min(1, { error: NAME_ERR }).optional(),
  tests: z.array(z.strictObject({
    name: z.string().min(1, { error: NAME_ERR }),
    trace: z.string().min(1, { error: NAME_ERR }).optional(),
    monitor: z.string().min(1, { error: NAME_ERR }).optional(),
    expect: z.array(z.strictObject({
      rule: RULE_ID,
      request: z.string().min(1, { error: NAME_ERR }),
      positions: z.array(z.int({ error: POSITIONS }).min(0, { error: POSITIONS }), {
        error: POSITIONS,
      }).optional(),
    })).default([]),
    expect_not: z.array(z.strictObject({
      rule: RULE_ID,
      request: z.string().min(1, { error: NAME_ERR }).optional(),
    })).default([]),
  })).min(1, { error: expectMessage("a list of at least one test") }),
});

/** One test, with absolute paths. */
export interface PolicyTest {
  file: string;
  line: number;
  name: string;
  trace: string;
  monitor: string;
  expect: { rule: string; request: string; positions?: number[] }[];
  expectNot: { rule: string; request?: string }[];
}

/**
 * Read and validate a test file. Throws {@linkcode ConfigError} with
 * `file:line:col` for every problem (a test without a trace or monitor
 * included).
 *
 * @example
 * ```ts
 * const tests = await loadPolicyTests("policies/demo.test.yaml");
 * tests[0].trace; // absolute path of the trace it replays
 * ```
 */
export async function loadPolicyTests(path: string): Promise<PolicyTest[]> {
  const src = await loadYamlSource(path);
  const parsed = validateYaml(PolicyTestFileSchema, src);
  const base = dirname(resolve(path));
  const abs = (p: string) => isAbsolute(p) ? p : resolve(base, p);
  const issues = [];
  const out: PolicyTest[] = [];
  for (const [i, t] of parsed.tests.entries()) {
    const at = src.locate(["tests", i]);
    const trace = t.trace ?? parsed.trace;
    const monitor = t.monitor ?? parsed.monitor;
    for (const [key, v] of [["trace", trace], ["monitor", monitor]] as const) {
      if (v === undefined) {
        issues.push({
          file: path,
          line: at.line,
          col: at.col,
          reason:
            `test '${t.name}': expected a '${key}' (in the test or at the top of the file), found none`,
        });
      }
    }
    if (trace === undefined || monitor === undefined) continue;
    out.push({
      file: path,
      line: at.line,
      name: t.name,
      trace: abs(trace),
      monitor: abs(monitor),
      expect: t.expect,
      expectNot: t.expect_not,
    });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return out;
}

/** Test files named by `path`: itself, the one beside a policy file, or all under a folder. */
async function findTestFiles(path: string): Promise<string[]> {
  const info = await Deno.stat(path);
  if (info.isDirectory) {
    return await filesUnder(path, { take: (name) => /\.test\.ya?ml$/.test(name) });
  }
  if (/\.test\.ya?ml$/.test(path)) return [path];
  const ext = extname(path);
  const beside = join(dirname(path), `${basename(path, ext)}.test${ext}`);
  try {
    await Deno.stat(beside);
  } catch {
    throw new Error(`${path}: expected rule tests beside it in ${beside}, found no such file`);
  }
  return [beside];
}

/** Result of one (monitor, trace) replay, shared by every test that names it. */
interface ReplayRun {
  firings: ReplayFiring[];
  stats: ReplayStats;
  ms: number;
  ruleIds: Set<string>;
}

const rel = (p: string) => {
  const r = relative(Deno.cwd(), p);
  return r.startsWith("..") ? p : r;
};

async function runTests(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("policy test", TEST_USAGE, args, {
    run: { type: "string" },
    verbose: { type: "boolean", short: "v" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length === 0) {
    return usageError("policy test", TEST_USAGE, "expected at least one path");
  }
  let filter: RegExp | null = null;
  try {
    if (values.run !== undefined) filter = new RegExp(values.run);
  } catch (err) {
    console.error(`policy test: --run: expected a regular expression, ${(err as Error).message}`);
    return 2;
  }

  let errors = 0;
  const files: string[] = [];
  for (const p of positionals) {
    try {
      files.push(...await findTestFiles(p));
    } catch (err) {
      console.error(
        err instanceof Deno.errors.NotFound
          ? `${p}: no such file or folder`
          : (err as Error).message,
      );
      errors++;
    }
  }

  const monitors = new Map<string, OfflineMonitor | Error>();
  const replays = new Map<string, ReplayRun | Error>();
  const replay = async (t: PolicyTest): Promise<ReplayRun | Error> => {
    const key = `${t.monitor}\0${t.trace}`;
    let r = replays.get(key);
    if (r) return r;
    let m = monitors.get(t.monitor);
    if (!m) {
      try {
        m = await loadMonitorAt(t.monitor, { evidence: false }); // reads firings, not alerts
      } catch (err) {
        m = err as Error;
      }
      monitors.set(t.monitor, m);
    }
    if (m instanceof Error) return m;
    const firings: ReplayFiring[] = [];
    const t0 = performance.now();
    try {
      const stats = await replayTrace(m, t.trace, {
        onFiring: (f) => firings.push(f),
        onProgress: (p) =>
          console.error(`policy test: replaying ${rel(p.path)}: ${progressText(p)}`),
      });
      r = {
        firings,
        stats,
        ms: performance.now() - t0,
        ruleIds: new Set(m.files.flatMap((f) => f.rules.map((x) => x.id))),
      };
    } catch (err) {
      r = err as Error;
    }
    replays.set(key, r);
    return r;
  };

  let passed = 0;
  let failed = 0;
  for (const file of files) {
    let tests: PolicyTest[];
    try {
      tests = await loadPolicyTests(file);
    } catch (err) {
      console.error((err as Error).message);
      errors++;
      continue;
    }
    tests = tests.filter((t) => !filter || filter.test(t.name));
    if (tests.length === 0) continue;
    console.log(`${rel(file)}:`);
    for (const t of tests) {
      const t0 = performance.now();
      const r = await replay(t);
      const problems = r instanceof Error ? [`cannot replay: ${r.message}`] : checkTest(t, r);
      const ms = (performance.now() - t0).toFixed(1);
      if (problems.length === 0) {
        passed++;
        console.log(`  ${t.name}: PASS (${ms}ms)`);
      } else {
        failed++;
        console.log(`  ${t.name}: FAIL (${ms}ms)  ${rel(t.file)}:${t.line}`);
        for (const p of problems) console.log(`    ${p}`);
      }
      if (values.verbose && !(r instanceof Error)) {
        for (const f of r.firings) console.log(`      fired: ${firingLine(f)}`);
      }
    }
  }
  for (const m of monitors.values()) if (!(m instanceof Error)) await m.close();

  const total = passed + failed;
  console.log("-".repeat(80));
  if (passed > 0) console.log(`PASS: ${passed}/${total}`);
  if (failed > 0) console.log(`FAIL: ${failed}/${total}`);
  if (errors > 0) console.log(`ERROR: ${errors} test file(s) could not be read`);
  if (total === 0 && errors === 0) {
    console.log("no tests found");
    return 1;
  }
  return failed > 0 || errors > 0 ? 1 : 0;
}

/** What is wrong with `t` given the replay's firings; empty when it passes. */
function checkTest(t: PolicyTest, r: ReplayRun): string[] {
  const problems: string[] = [];
  const unknown = (rule: string) =>
    r.ruleIds.has(rule) ? null : `rule '${rule}' is not in the monitor's policies (a typo?)`;
  for (const e of t.expect) {
    const bad = unknown(e.rule);
    if (bad) {
      problems.push(bad);
      continue;
    }
    const hits = r.firings.filter((f) => f.rule.def.id === e.rule && f.requestId === e.request);
    if (hits.length === 0) {
      const elsewhere = [
        ...new Set(r.firings.filter((f) => f.rule.def.id === e.rule).map((f) => f.requestId)),
      ];
      problems.push(
        `expected rule '${e.rule}' to fire on request '${e.request}', found no firing` +
          (elsewhere.length
            ? ` (it fired on ${elsewhere.join(", ")})`
            : " (it fired on no request)"),
      );
      continue;
    }
    if (e.positions) {
      const fired = new Set(hits.flatMap((f) => f.positions));
      const missing = e.positions.filter((p) => !fired.has(p));
      if (missing.length > 0) {
        problems.push(
          `expected rule '${e.rule}' on request '${e.request}' to fire at positions ${
            e.positions.join(", ")
          }, ` +
            `found positions ${[...fired].sort((a, b) => a - b).join(", ")} (missing ${
              missing.join(", ")
            })`,
        );
      }
    }
  }
  for (const e of t.expectNot) {
    const bad = unknown(e.rule);
    if (bad) {
      problems.push(bad);
      continue;
    }
    const hits = r.firings.filter((f) =>
      f.rule.def.id === e.rule && (e.request === undefined || f.requestId === e.request)
    );
    if (hits.length > 0) {
      const on = e.request !== undefined ? `on request '${e.request}'` : "on any request";
      problems.push(
        `expected rule '${e.rule}' not to fire ${on}, found ${hits.length} firing(s): ` +
          hits.slice(0, 3).map((f) =>
            `${f.requestId} at ${f.positions.join(",")} (record ${f.record})`
          )
            .join("; ") +
          (hits.length > 3 ? "; ..." : ""),
      );
    }
  }
  return problems;
}

/** One line for a firing, as `replay` prints it. */
export function firingLine(f: ReplayFiring): string {
  const def = f.rule.def;
  const pos = f.positions.join(",");
  const sig = f.signal.kind === "probe"
    ? `probe ${f.signal.encoder}/${f.signal.index}`
    : `latent ${f.signal.encoder}/${f.signal.index}${f.signal.label ? ` "${f.signal.label}"` : ""}`;
  return `[${def.severity.toUpperCase()}] ${def.id} request ${f.requestId} tokens ${pos} ${sig} value ${
    fmtNum(f.value)
  }`;
}

function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v)
    ? String(v)
    : Math.abs(v) >= 1000 || Math.abs(v) < 0.001
    ? v.toExponential(3)
    : v.toPrecision(4);
}

/** `1234 records, 45% of 12.0 MB` */
export function progressText(p: { records: number; bytesRead: number; fileSize: number }): string {
  const pct = p.fileSize > 0 ? Math.min(100, Math.floor((p.bytesRead / p.fileSize) * 100)) : 0;
  return `${p.records} records, ${pct}% of ${(p.fileSize / 1e6).toFixed(1)} MB`;
}

// ---------------------------------------------------------------------------
// policy calibrate

/** The rates of one threshold. */
export interface RateAt {
  threshold: number | null;
  /** Tokens on which the test holds, per 1000 tokens of the traces. */
  perThousandTokens: number;
  /** Requests on which it holds at least once, per 1000 requests. */
  perThousandRequests: number;
}

/** Calibration of one rule. */
export interface RuleCalibration {
  rule: string;
  file: string;
  line: number;
  test?: string;
  composite?: boolean;
  note?: string;
  /** Why the rule was not calibrated. */
  skipped?: string;
  current?: RateAt;
  suggested?: { token?: RateAt; request?: RateAt };
}

/** What `calibrate --json` prints. */
export interface CalibrationReport {
  monitor: string;
  traces: string[];
  targetFpr: number;
  tokens: number;
  requests: number;
  rules: RuleCalibration[];
}

/**
 * Calibrate every rule of `monitor` on the benign `traces`.
 *
 * @example
 * ```ts
 * import type { OfflineMonitor } from "../traces/offline.ts";
 * declare const monitor: OfflineMonitor;
 * const report = await calibrate(monitor, ["benign.trace.gz"], 0.001, ["token", "request"]);
 * report.rules[0].suggested?.request?.threshold;
 * ```
 */
export async function calibrate(
  monitor: OfflineMonitor,
  traces: string[],
  targetFpr: number,
  per: ("token" | "request")[],
  onProgress?: (text: string) => void,
): Promise<CalibrationReport> {
  const rules: RuleCalibration[] = [];
  const collectors: { cal: RuleCalibration; c: PooledCollector }[] = [];
  const compiled = new Map(monitor.set.rules.map((r) => [r.id, r]));
  for (const file of monitor.files) {
    for (const def of file.rules) {
      const cal: RuleCalibration = { rule: def.id, file: def.source.file, line: def.source.line };
      rules.push(cal);
      const rule = compiled.get(def.id);
      if (!def.enabled || !rule) {
        cal.skipped = "disabled";
        continue;
      }
      const trig = triggerTest(rule);
      if (!trig) {
        cal.skipped = "no trigger test outside a 'not' to calibrate";
        continue;
      }
      cal.test = describeTrigger(trig);
      cal.composite = trig.composite;
      if (trig.note) cal.note = trig.note;
      collectors.push({ cal, c: new PooledCollector(trig, rule.scope) });
    }
  }
  let tokens = 0;
  const requests = new Set<string>();
  for (const path of traces) {
    await replayTrace(monitor, path, {
      onProgress: (p) => onProgress?.(`${rel(p.path)}: ${progressText(p)}`),
      onBatch: (batch) => {
        for (const { frame, firstRow } of batch.frames) {
          tokens += frame.tokens;
          // the same request id in two traces is two requests
          requests.add(`${path}\0${frame.requestId}`);
          for (const { c } of collectors) {
            c.push(
              `${path}\0${frame.requestId}`,
              frame.position,
              frame.tokens,
              frame.phase,
              batch.latents,
              firstRow,
            );
            if (frame.endOfRequest) c.endRequest(`${path}\0${frame.requestId}`);
          }
        }
      },
    });
  }
  const nReq = requests.size;
  for (const { cal, c } of collectors) {
    const op = c.trigger.op;
    const reqValues = [...c.requestValues.values()];
    // null: no threshold reaches the target; the rule may then fire wherever it is evaluated
    const at = (threshold: number | null): RateAt => ({
      threshold,
      perThousandTokens: 1000 *
        (threshold === null
          ? c.tokenValues.length / Math.max(1, tokens)
          : passRate(c.tokenValues, tokens, op, threshold)),
      perThousandRequests: 1000 *
        (threshold === null
          ? reqValues.length / Math.max(1, nReq)
          : passRate(reqValues, nReq, op, threshold)),
    });
    cal.current = at(c.trigger.threshold);
    cal.suggested = {};
    if (per.includes("token")) {
      cal.suggested.token = at(suggestThreshold(c.tokenValues, tokens, targetFpr, op));
    }
    if (per.includes("request")) {
      cal.suggested.request = at(suggestThreshold(reqValues, nReq, targetFpr, op));
    }
  }
  return { monitor: monitor.config.monitor, traces, targetFpr, tokens, requests: nReq, rules };
}

async function runCalibrate(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("policy calibrate", CALIBRATE_USAGE, args, {
    monitor: { type: "string" },
    traces: { type: "string", multiple: true },
    "target-fpr": { type: "string" },
    per: { type: "string" },
    json: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  // `--traces a b c`: parseArgs takes one value per flag; the rest arrive as positionals
  const traces = [...(values.traces ?? []), ...positionals];
  const usage = (msg: string) => usageError("policy calibrate", CALIBRATE_USAGE, msg);
  if (!values.monitor) return usage("expected --monitor <file>");
  if (traces.length === 0) return usage("expected --traces <trace>...");
  const fpr = Number(values["target-fpr"]);
  if (values["target-fpr"] === undefined || !(fpr > 0 && fpr < 1)) {
    return usage(
      `--target-fpr: expected a fraction in (0, 1), found ${
        JSON.stringify(values["target-fpr"] ?? null)
      }`,
    );
  }
  if (values.per !== undefined && values.per !== "token" && values.per !== "request") {
    return usage(`--per: expected token or request, found ${JSON.stringify(values.per)}`);
  }
  const per: ("token" | "request")[] = values.per
    ? [values.per as "token" | "request"]
    : ["token", "request"];

  let monitor: OfflineMonitor;
  try {
    monitor = await loadMonitorAt(values.monitor, { evidence: false }); // reads latents, not alerts
  } catch (err) {
    return commandFailed("policy calibrate", err);
  }
  let report: CalibrationReport;
  try {
    report = await calibrate(
      monitor,
      traces,
      fpr,
      per,
      (t) => console.error(`policy calibrate: ${t}`),
    );
  } catch (err) {
    const e = err as Error;
    console.error(
      `policy calibrate: ${
        e instanceof TraceFormatError || e instanceof Deno.errors.NotFound ? "" : "error: "
      }${e.message}`,
    );
    return 1;
  } finally {
    await monitor.close();
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else printCalibration(report);
  return 0;
}

function printCalibration(r: CalibrationReport): void {
  const out = (s = "") => console.log(s);
  out(
    `calibrate: monitor '${r.monitor}', ${r.traces.length} benign trace(s), ${r.tokens} tokens in ${r.requests} requests, ` +
      `target false-positive rate ${r.targetFpr}`,
  );
  out(
    "rates: tokens/1000 = tokens on which the test holds per 1000 tokens (alerts per 1000 tokens without",
  );
  out(
    "suppression); requests/1000 = requests on which it holds at least once per 1000 requests (alerts",
  );
  out("per 1000 requests with the default per-request suppression)");
  const cell = (s: string, w: number) => s.padEnd(w);
  for (const c of r.rules) {
    out();
    out(`rule ${c.rule} (${rel(c.file)}:${c.line})`);
    if (c.skipped) {
      out(`  not calibrated: ${c.skipped}`);
      continue;
    }
    out(`  test: ${c.test}`);
    if (c.note) out(`  note: ${c.note}`);
    out(`  ${cell("", 22)}${cell("threshold", 14)}${cell("tokens/1000", 14)}requests/1000`);
    const row = (name: string, a: RateAt | undefined) => {
      if (!a) return;
      const thr = a.threshold === null ? "any" : fmtNum(a.threshold);
      out(
        `  ${cell(name, 22)}${cell(thr, 14)}${cell(a.perThousandTokens.toFixed(2), 14)}${
          a.perThousandRequests.toFixed(2)
        }` +
          (a.threshold === null
            ? "  (below the target at any threshold: even firing wherever evaluated)"
            : ""),
      );
    };
    row("current", c.current);
    row("suggested (token)", c.suggested?.token);
    row("suggested (request)", c.suggested?.request);
  }
}
