/**
 * `latentwatch policy test`: rule tests. A test file (`<name>.test.yaml`,
 * `./policy_test_file.ts`) names a monitor and, per test, either a recorded
 * trace to replay through it (optionally as another tenant, model or with
 * other metadata) or a request with its tokens and signal values given
 * directly (`./policy_cases.ts`, run through the policy engine without
 * encoders); then the alerts expected and those expected not to fire. Each
 * test is reported PASS/FAIL with a summary like `opa test`; a failing one
 * shows, for each rule it is about, every condition's pooled value per
 * token (`./condition_table.ts`). Test files are described in
 * `docs/traces.md`.
 *
 * @module
 */
import { basename, dirname, extname, join } from "node:path";
import { ConfigError, type ConfigIssue } from "../config/errors.ts";
import type { Frame } from "../core/frame/format.ts";
import { type OfflineMonitor } from "../traces/offline.ts";
import { type ReplayFiring, replayTrace } from "../traces/replay.ts";
import { filesUnder, loadMonitorAt, parseCommandArgs, usageError } from "./common.ts";
import { conditionTable } from "./condition_table.ts";
import { explainReplay } from "./explain_replay.ts";
import { firingLine, fmtNum, progressText, rel } from "./policy_format.ts";
import {
  type CaseMonitor,
  caseSignal,
  loadCaseMonitor,
  overrideFrame,
  runGivenCase,
} from "./policy_case_run.ts";
import { type GivenCase, resolveGivenCase } from "./policy_cases.ts";
import { loadPolicyTests, type PolicyTest } from "./policy_test_file.ts";

const TEST_USAGE = `usage: latentwatch policy test <path>... [--run <regex>] [--verbose]

  Run rule tests. A path is a test file (<name>.test.yaml), a policy file
  (its <name>.test.yaml beside it), or a folder (every *.test.yaml under it).
  Each test replays a recorded trace through a monitor, or runs the request,
  tokens and signal values it gives through the monitor's policies, and checks
  the alerts expected (rule, request, optionally token positions) and those
  expected not to fire. A failing test prints each condition's value per token.
  Test files are described in docs/traces.md.

  --run <regex>   only the tests whose name matches
  --verbose       also list every firing of each replay

  Exit status: 0 when every test passes, 1 when one fails or a test file is
  invalid, 2 on bad usage.`;

export { loadPolicyTests, type PolicyTest, PolicyTestFileSchema } from "./policy_test_file.ts";

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

/** A firing as the checks read it: from a replay, or from a given-values case. */
interface TestFiring {
  rule: { def: { id: string } };
  requestId: string;
  positions: number[];
  /** Trace record it fired on (replays only). */
  record?: number;
}

/** What running one test gave: its firings, and why a rule did (not) fire on a request. */
interface TestRun {
  firings: TestFiring[];
  ruleIds: Set<string>;
  /** Verbose lines of the firings. */
  lines: string[];
  /** The condition table of rule `rule` on request `request`. */
  explain(rule: string, request: string): Promise<string[]>;
}

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

  const runner = new TestRunner();
  let passed = 0;
  let failed = 0;
  for (const file of files) {
    let tests: PolicyTest[];
    try {
      tests = (await loadPolicyTests(file)).filter((t) => !filter || filter.test(t.name));
      await runner.resolveGiven(tests);
    } catch (err) {
      console.error((err as Error).message);
      errors++;
      continue;
    }
    if (tests.length === 0) continue;
    console.log(`${rel(file)}:`);
    for (const t of tests) {
      const t0 = performance.now();
      const r = await runner.run(t);
      const problems = r instanceof Error
        ? [{ text: `cannot ${t.kind === "trace" ? "replay" : "run"}: ${r.message}` }]
        : checkTest(t, r);
      const ms = (performance.now() - t0).toFixed(1);
      if (problems.length === 0) {
        passed++;
        console.log(`  ${t.name}: PASS (${ms}ms)`);
      } else {
        failed++;
        console.log(`  ${t.name}: FAIL (${ms}ms)  ${rel(t.file)}:${t.line}`);
        for (const p of problems) console.log(`    ${p.text}`);
        if (!(r instanceof Error)) {
          const shown = new Set<string>();
          for (const p of problems) {
            if (p.rule === undefined || p.request === undefined) continue;
            const key = `${p.rule}\0${p.request}`;
            if (shown.has(key)) continue;
            shown.add(key);
            console.log(`    why: rule '${p.rule}' on request '${p.request}', per token:`);
            for (const l of await r.explain(p.rule, p.request)) console.log(`      ${l}`);
          }
        }
      }
      if (values.verbose && !(r instanceof Error)) {
        for (const l of r.lines) console.log(`      fired: ${l}`);
      }
    }
  }
  await runner.close();

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

/** Runs tests, sharing loaded monitors and replays between them. */
class TestRunner {
  readonly #monitors = new Map<string, OfflineMonitor | Error>();
  readonly #caseMonitors = new Map<string, CaseMonitor | Error>();
  readonly #replays = new Map<string, TestRun | Error>();
  readonly #given = new Map<PolicyTest, GivenCase>();

  /**
   * Check the given values of `tests` against their monitors; throws a
   * {@linkcode ConfigError} listing every problem (a monitor that does not
   * load fails its tests instead).
   */
  async resolveGiven(tests: readonly PolicyTest[]): Promise<void> {
    const issues: ConfigIssue[] = [];
    for (const t of tests) {
      if (t.kind !== "given") continue;
      const m = await this.#caseMonitor(t.monitor);
      if (m instanceof Error) continue;
      const r = resolveGivenCase(t.given, m.signals);
      issues.push(...r.issues);
      if (r.case) this.#given.set(t, r.case);
    }
    if (issues.length > 0) throw new ConfigError(issues);
  }

  /** Run one test (a replay is shared by the tests naming the same monitor, trace and overrides). */
  async run(t: PolicyTest): Promise<TestRun | Error> {
    if (t.kind === "given") {
      const m = await this.#caseMonitor(t.monitor);
      if (m instanceof Error) return m;
      return givenRun(m, this.#given.get(t)!);
    }
    const key = `${t.monitor}\0${t.trace}\0${JSON.stringify(t.request ?? null)}`;
    let r = this.#replays.get(key);
    if (!r) this.#replays.set(key, r = await this.#replay(t));
    return r;
  }

  async close(): Promise<void> {
    for (const m of this.#monitors.values()) if (!(m instanceof Error)) await m.close();
  }

  async #caseMonitor(path: string): Promise<CaseMonitor | Error> {
    let m = this.#caseMonitors.get(path);
    if (!m) {
      try {
        m = await loadCaseMonitor(path);
      } catch (err) {
        m = err as Error;
      }
      this.#caseMonitors.set(path, m);
    }
    return m;
  }

  async #replay(t: PolicyTest & { kind: "trace" }): Promise<TestRun | Error> {
    let m = this.#monitors.get(t.monitor);
    if (!m) {
      try {
        m = await loadMonitorAt(t.monitor, { evidence: false }); // reads firings, not alerts
      } catch (err) {
        m = err as Error;
      }
      this.#monitors.set(t.monitor, m);
    }
    if (m instanceof Error) return m;
    const monitor = m;
    const request = t.request;
    const rewriteFrame = request ? (f: Frame) => overrideFrame(f, request) : undefined;
    const firings: ReplayFiring[] = [];
    try {
      await replayTrace(monitor, t.trace, {
        onFiring: (f) => firings.push(f),
        onProgress: (p) =>
          console.error(`policy test: replaying ${rel(p.path)}: ${progressText(p)}`),
        ...(rewriteFrame ? { rewriteFrame } : {}),
      });
    } catch (err) {
      return err as Error;
    }
    return {
      firings,
      ruleIds: new Set(monitor.files.flatMap((f) => f.rules.map((x) => x.id))),
      lines: firings.map(firingLine),
      explain: (rule, requestId) =>
        explainReplay({ monitor, trace: t.trace, rule, requestId, firings, rewriteFrame }),
    };
  }
}

/** A given-values case run through the engine. */
function givenRun(m: CaseMonitor, c: GivenCase): TestRun {
  const firings = runGivenCase({ set: m.set, signals: m.signals, case: c, model: m.model });
  return {
    firings,
    ruleIds: new Set(m.set.rules.map((r) => r.id)),
    lines: firings.map((f) => `${f.rule.id} at ${f.positions.join(",")} value ${fmtNum(f.value)}`),
    explain: (ruleId) => {
      const rule = m.set.rules.find((r) => r.id === ruleId);
      return Promise.resolve(
        rule
          ? conditionTable({
            rule,
            length: c.length,
            rawOf: (t) => caseSignal(c, t),
            text: (pos) => c.tokens?.[pos],
            firedAt: firings.filter((f) => f.rule.id === ruleId).flatMap((f) => f.positions),
          })
          : [`rule '${ruleId}' is not an enabled rule of the monitor`],
      );
    },
  };
}

/** A problem of a test, with the rule and request it is about (for the condition table). */
interface TestProblem {
  text: string;
  rule?: string;
  request?: string;
}

/** What is wrong with `t` given its run's firings; empty when it passes. */
function checkTest(t: PolicyTest, r: TestRun): TestProblem[] {
  const problems: TestProblem[] = [];
  const unknown = (rule: string) =>
    r.ruleIds.has(rule) ? null : `rule '${rule}' is not in the monitor's policies (a typo?)`;
  for (const e of t.expect) {
    const bad = unknown(e.rule);
    if (bad) {
      problems.push({ text: bad });
      continue;
    }
    const about = { rule: e.rule, request: e.request };
    const hits = r.firings.filter((f) => f.rule.def.id === e.rule && f.requestId === e.request);
    if (hits.length === 0) {
      const elsewhere = [
        ...new Set(r.firings.filter((f) => f.rule.def.id === e.rule).map((f) => f.requestId)),
      ];
      problems.push({
        ...about,
        text: `expected rule '${e.rule}' to fire on request '${e.request}', found no firing` +
          (elsewhere.length
            ? ` (it fired on ${elsewhere.join(", ")})`
            : " (it fired on no request)"),
      });
      continue;
    }
    if (e.positions) {
      const fired = new Set(hits.flatMap((f) => f.positions));
      const missing = e.positions.filter((p) => !fired.has(p));
      if (missing.length > 0) {
        problems.push({
          ...about,
          text: `expected rule '${e.rule}' on request '${e.request}' to fire at positions ${
            e.positions.join(", ")
          }, found positions ${[...fired].sort((a, b) => a - b).join(", ")} (missing ${
            missing.join(", ")
          })`,
        });
      }
    }
  }
  for (const e of t.expectNot) {
    const bad = unknown(e.rule);
    if (bad) {
      problems.push({ text: bad });
      continue;
    }
    const hits = r.firings.filter((f) =>
      f.rule.def.id === e.rule && (e.request === undefined || f.requestId === e.request)
    );
    if (hits.length > 0) {
      const on = e.request !== undefined ? `on request '${e.request}'` : "on any request";
      problems.push({
        rule: e.rule,
        request: hits[0].requestId,
        text: `expected rule '${e.rule}' not to fire ${on}, found ${hits.length} firing(s): ` +
          hits.slice(0, 3).map((f) =>
            `${f.requestId} at ${f.positions.join(",")}` +
            (f.record !== undefined ? ` (record ${f.record})` : "")
          ).join("; ") +
          (hits.length > 3 ? "; ..." : ""),
      });
    }
  }
  return problems;
}
