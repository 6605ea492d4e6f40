/**
 * Rule test files (`<name>.test.yaml`): their zod schema and loader. A
 * test either replays a recorded trace through a monitor (optionally
 * overriding the requests' tenant, model or metadata), or gives its
 * request, tokens and signal values directly (see `./policy_cases.ts`).
 * Described in `docs/traces.md`.
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { ConfigError, type ConfigIssue } from "../config/errors.ts";
import { expectMessage, loadYamlSource, validateYaml } from "../config/yaml_source.ts";
import { choiceOf } from "../shared/schema.ts";
import {
  type CaseRequest,
  CaseRequestSchema,
  CaseSignalSchema,
  GIVEN_REQUEST_ID,
  type GivenCaseSource,
} from "./policy_cases.ts";

const NAME_ERR = expectMessage("a non-empty string");
const RULE_ID = z.string().min(1, { error: NAME_ERR });
const POSITIONS = expectMessage("a list of token positions (integers ≥ 0)");
const TOKENS = expectMessage("a list of token texts or a number of tokens (≥ 1)");

/** The zod schema of a rule test file (`<name>.test.yaml`). */
export const PolicyTestFileSchema = z.strictObject({
  /** Defaults for every test of the file; relative to the test file. */
  trace: z.string().min(1, { error: NAME_ERR }).optional(),
  monitor: z.string().min(1, { error: NAME_ERR }).optional(),
  tests: z.array(z.strictObject({
    name: z.string().min(1, { error: NAME_ERR }),
    trace: z.string().min(1, { error: NAME_ERR }).optional(),
    monitor: z.string().min(1, { error: NAME_ERR }).optional(),
    /** Who the request is: given values' request, or an override of the trace's. */
    request: CaseRequestSchema.optional(),
    /** Given values: the token texts, or how many tokens. */
    tokens: choiceOf([
      z.array(z.string({ error: TOKENS }), { error: TOKENS }).min(1, { error: TOKENS }),
      z.int({ error: TOKENS }).min(1, { error: TOKENS }),
    ], {
      expected: "a list of token texts or a number of tokens (≥ 1)",
      choose: (v) => Array.isArray(v) ? 0 : typeof v === "number" ? 1 : -1,
    }).optional(),
    /** Given values: each signal's value per token. */
    signals: z.array(CaseSignalSchema, {
      error: expectMessage("a list of signals ({sae, latent|label} or {probe, score}, values)"),
    }).optional(),
    expect: z.array(z.strictObject({
      rule: RULE_ID,
      request: z.string().min(1, { error: NAME_ERR }).optional(),
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

/** What a test expects, whichever its kind. */
interface PolicyTestBase {
  file: string;
  line: number;
  name: string;
  /** Absolute path of the monitor. */
  monitor: string;
  /** Rules that must fire (on `request`, at least at `positions` when given). */
  expect: { rule: string; request: string; positions?: number[] }[];
  /** Rules that must not fire (on `request`, or on any request). */
  expectNot: { rule: string; request?: string }[];
}

/** One test, with absolute paths: a trace replay, or given values. */
export type PolicyTest =
  & PolicyTestBase
  & (
    | { kind: "trace"; trace: string; request?: CaseRequest }
    | { kind: "given"; given: GivenCaseSource }
  );

/**
 * Read and validate a test file. Throws {@linkcode ConfigError} with
 * `file:line:col` for every problem (a test without a trace, signals or
 * monitor included). Given values are checked against the monitor's
 * encoders later (`resolveGivenCase`).
 *
 * @example
 * ```ts
 * import { loadPolicyTests } from "./policy_test_file.ts";
 * const tests = await loadPolicyTests("policies/demo.test.yaml");
 * const t = tests[0];
 * if (t.kind === "trace") t.trace; // absolute path of the trace it replays
 * ```
 */
export async function loadPolicyTests(path: string): Promise<PolicyTest[]> {
  const src = await loadYamlSource(path);
  const parsed = validateYaml(PolicyTestFileSchema, src);
  const base = dirname(resolve(path));
  const abs = (p: string) => isAbsolute(p) ? p : resolve(base, p);
  const issues: ConfigIssue[] = [];
  const out: PolicyTest[] = [];
  for (const [i, t] of parsed.tests.entries()) {
    const issue = (where: (string | number)[], reason: string) =>
      issues.push({ file: path, ...src.locate(["tests", i, ...where]), reason });
    const at = src.locate(["tests", i]);
    const given = t.signals !== undefined || t.tokens !== undefined;
    const trace = given ? undefined : t.trace ?? parsed.trace;
    const monitor = t.monitor ?? parsed.monitor;
    if (given && t.trace !== undefined) {
      issue(
        ["trace"],
        `test '${t.name}': expected either 'trace' (replay a recording) or 'signals'/'tokens' ` +
          `(given values), found both`,
      );
    }
    if (monitor === undefined) {
      issue(
        [],
        `test '${t.name}': expected a 'monitor' (in the test or at the top of the file), found none`,
      );
    }
    if (!given && trace === undefined) {
      issue(
        [],
        `test '${t.name}': expected a 'trace' (in the test or at the top of the file) or ` +
          `'signals' (given values), found none`,
      );
    }
    for (const [key, list] of [["expect", t.expect], ["expect_not", t.expect_not]] as const) {
      for (const [k, e] of list.entries()) {
        if (given && e.request !== undefined) {
          issue(
            [key, k, "request"],
            `test '${t.name}': expected no 'request' here: a case with given values is one ` +
              `request (name it with request.id)`,
          );
        }
        if (!given && key === "expect" && e.request === undefined) {
          issue(
            [key, k],
            `test '${t.name}': expected a 'request' (the request id in the trace), found none`,
          );
        }
      }
    }
    if (!given && t.request?.phase !== undefined) {
      issue(
        ["request", "phase"],
        `test '${t.name}': expected no 'phase' when replaying a trace (its frames carry theirs)`,
      );
    }
    if (monitor === undefined) continue;
    const common = {
      file: path,
      line: at.line,
      name: t.name,
      monitor: abs(monitor),
      expectNot: t.expect_not,
    };
    if (given) {
      const id = t.request?.id ?? GIVEN_REQUEST_ID;
      out.push({
        ...common,
        kind: "given",
        expect: t.expect.map((e) => ({ ...e, request: id })),
        expectNot: t.expect_not.map((e) => ({ ...e, request: id })),
        given: {
          src,
          at: ["tests", i],
          signals: t.signals ?? [],
          ...(t.request ? { request: t.request } : {}),
          ...(t.tokens !== undefined ? { tokens: t.tokens } : {}),
        },
      });
    } else if (trace !== undefined) {
      out.push({
        ...common,
        kind: "trace",
        trace: abs(trace),
        expect: t.expect.map((e) => ({ ...e, request: e.request ?? "" })),
        ...(t.request ? { request: t.request } : {}),
      });
    }
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return out;
}
