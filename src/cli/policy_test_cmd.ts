/**
 * `latentwatch policy test`: rule tests over recorded traces. A test file
 * (`<name>.test.yaml`) names a trace, a monitor, the alerts expected and
 * those expected not to fire; each test replays the trace through the
 * monitor and is reported PASS/FAIL with a summary like `opa test`. Test
 * files are described in `docs/traces.md`.
 *
 * Also holds the small formatting helpers the offline policy tools share
 * (progress text, numbers, paths relative to the working folder).
 *
 * @module
 */
import { basename, dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "../config/errors.ts";
import { expectMessage, loadYamlSource, validateYaml } from "../config/yaml_source.ts";
import {
  type OfflineMonitor,
  type ReplayFiring,
  type ReplayStats,
  replayTrace,
} from "../traces/offline.ts";
import { filesUnder, loadMonitorAt, parseCommandArgs, usageError } from "./common.ts";

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

/** `p` relative to the working folder, or as given when outside it. */
export const rel = (p: string) => {
  const r = relative(Deno.cwd(), p);
  return r.startsWith("..") ? p : r;
};

/** Run `policy test ...` and return the exit code. */
export async function runTests(args: string[]): Promise<number> {
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
  // with several conditions, which one completed the rule
  const by = f.rule.conditions.length > 1
    ? ` (condition ${f.rule.conditions[f.completedBy].name})`
    : "";
  return `[${def.severity.toUpperCase()}] ${def.id} request ${f.requestId} tokens ${pos} ${sig} value ${
    fmtNum(f.value)
  }${by}`;
}

/** A number as the policy tools print it: integers as is, others to 4 significant digits. */
export function fmtNum(v: number): string {
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
