/**
 * `latentwatch policy calibrate`: from benign recorded traces, suggest each
 * rule's threshold for a false-positive target, per token and per request,
 * with the alert rates at the current and suggested thresholds: the
 * command's flags, its sample-size check, its output and `--write`. The
 * calibration itself (replaying the traces, the rates) is
 * `policy_calibrate_run.ts`. Documented in `docs/traces.md`.
 *
 * @module
 */
import { sampleNeeded } from "../traces/calibrate.ts";
import type { OfflineMonitor } from "../traces/offline.ts";
import { setThresholds, type ThresholdEdit, thresholdText } from "../traces/calibrate_write.ts";
import { formatFinding, lintPolicies } from "./policy.ts";
import { TraceFormatError } from "../traces/format.ts";
import { commandFailed, loadMonitorAt, parseCommandArgs, usageError } from "./common.ts";
import { calibrate, type CalibrationReport, type RateAt } from "./policy_calibrate_run.ts";
import { fmtNum, rel } from "./policy_format.ts";

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
  --positives <t>...  traces whose requests should all be caught (repeat --positives per file):
                      the detection rate (positive requests on which the test holds at
                      least once) is reported at each threshold
  --rule <id>         only this rule (repeatable)
  --condition <c>     calibrate condition <c> of each rule instead of its trigger: a 1-based
                      index, the condition's name (name: or its default, as alerts list
                      it) or its path in the condition tree (test, all[1], any[0].all[2]);
                      the output lists every rule's conditions by all three
  --write             set the suggested thresholds (per request unless --per token) in the
                      policy files, changing only those numbers, then lint them again
  --json              one JSON document on stdout
  --allow-small-sample  report even when the benign sample cannot measure the target
                      (fewer than 1/target requests, or tokens for --per token)

  With N benign requests the smallest measurable false-positive rate is 1/N:
  below 1/target requests the command refuses (exit 1), below 3/target it warns.

  Exit status: 0 on success, 1 on errors (unreadable trace, bad monitor), 2 on bad usage.`;

export {
  calibrate,
  type CalibrateOptions,
  type CalibrationReport,
  type RateAt,
  type RuleCalibration,
} from "./policy_calibrate_run.ts";

/** Run `policy calibrate ...` and return the exit code. */
export async function runCalibrate(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("policy calibrate", CALIBRATE_USAGE, args, {
    monitor: { type: "string" },
    traces: { type: "string", multiple: true },
    "target-fpr": { type: "string" },
    per: { type: "string" },
    json: { type: "boolean" },
    "allow-small-sample": { type: "boolean" },
    positives: { type: "string", multiple: true },
    condition: { type: "string" },
    rule: { type: "string", multiple: true },
    write: { type: "boolean" },
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
      {
        positives: values.positives ?? [],
        ...(values.condition !== undefined ? { condition: values.condition } : {}),
        ...(values.rule ? { rules: values.rule } : {}),
      },
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
  const small = sampleProblems(report, per);
  for (const p of small) {
    console.error(`policy calibrate: ${p.refuse ? "error" : "warning"}: ${p.message}`);
  }
  if (small.some((p) => p.refuse) && !values["allow-small-sample"]) {
    console.error(
      "policy calibrate: refusing to suggest thresholds (--allow-small-sample to report anyway)",
    );
    return 1;
  }
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else printCalibration(report);
  if (values.write) {
    return await writeThresholds(
      report,
      per.includes("request") ? "request" : "token",
      values.monitor,
    );
  }
  return 0;
}

/**
 * `--write`: put each rule's suggested threshold (per request unless
 * `--per token`) into its policy file, editing only that scalar, then lint
 * the files again. Rules where every threshold meets the target keep theirs;
 * a test shared by several rules (a macro) gets the strictest suggestion.
 */
async function writeThresholds(
  r: CalibrationReport,
  per: "token" | "request",
  monitor: string,
): Promise<number> {
  const byFile = new Map<string, Map<string, ThresholdEdit & { rules: string[] }>>();
  for (const c of r.rules) {
    const s = c.suggested?.[per];
    if (!s || !c.testSource || s.anyThresholdMeets) continue;
    const { file, line, col, op } = c.testSource;
    const edits = byFile.get(file) ?? new Map();
    byFile.set(file, edits);
    const key = `${line}:${col ?? ""}`;
    const prev = edits.get(key);
    if (!prev) {
      edits.set(key, {
        line,
        ...(col !== undefined ? { col } : {}),
        op,
        value: s.threshold,
        rules: [c.rule],
      });
    } else {
      prev.value = op === "above"
        ? Math.max(prev.value, s.threshold)
        : Math.min(prev.value, s.threshold);
      prev.rules.push(c.rule);
    }
  }
  for (const [file, edits] of byFile) {
    try {
      const text = await Deno.readTextFile(file);
      const next = setThresholds(text, [...edits.values()]);
      const tmp = `${file}.calibrate-tmp`;
      await Deno.writeTextFile(tmp, next);
      await Deno.rename(tmp, file);
    } catch (err) {
      console.error(`policy calibrate: --write ${rel(file)}: ${(err as Error).message}`);
      return 1;
    }
    for (const e of edits.values()) {
      console.log(
        `wrote ${rel(file)}:${e.line}: ${e.op}: ${thresholdText(e.value)} (${
          e.rules.join(", ")
        }, per ${per})`,
      );
    }
  }
  if (byFile.size === 0) {
    console.log("wrote nothing: no rule has a threshold to change");
    return 0;
  }
  const lint = await lintPolicies([...byFile.keys()], { monitor });
  for (const f of [...lint.errors, ...lint.warnings]) console.log(formatFinding(f));
  console.log(
    `re-lint: ${
      lint.ok ? "ok" : "FAILED"
    } (${lint.errors.length} error(s), ${lint.warnings.length} warning(s))`,
  );
  return lint.ok ? 0 : 1;
}

/**
 * Whether the benign sample can measure the target: with N requests (tokens
 * for per-token rates) the smallest non-zero rate is 1/N. Below
 * `ceil(1/target)` items the target is not measurable (refuse); below
 * `ceil(3/target)` it is a rough estimate at best (warn).
 */
export function sampleProblems(
  r: Pick<CalibrationReport, "targetFpr" | "tokens" | "requests">,
  per: ("token" | "request")[],
): { refuse: boolean; message: string }[] {
  const need = sampleNeeded(r.targetFpr);
  const out: { refuse: boolean; message: string }[] = [];
  for (const unit of per) {
    const n = unit === "token" ? r.tokens : r.requests;
    const what = `${unit}s`;
    if (n >= need.rough) continue;
    const refuse = n < need.measurable;
    out.push({
      refuse,
      message: `${n} benign ${what}: the smallest measurable false-positive rate per ${unit} is ` +
        `${
          n === 0 ? "none (no items)" : `1/${n} = ${+(1 / n).toPrecision(3)}`
        }; a target of ${r.targetFpr} needs at least ` +
        `${need.measurable} ${what} to be measurable and ${need.rough} (3/target) for a rough estimate`,
    });
  }
  return out;
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
  if (r.positives) {
    out(
      `detected = share of the ${r.positives.requests} requests of ${r.positives.traces.length} positive trace(s) ` +
        "on which the test holds at least once",
    );
  }
  const cell = (s: string, w: number) => s.padEnd(w);
  for (const c of r.rules) {
    out();
    out(`rule ${c.rule} (${rel(c.file)}:${c.line})`);
    if (c.skipped) {
      out(`  not calibrated: ${c.skipped}`);
      continue;
    }
    for (const line of c.conditions ?? []) out(`  condition ${line}`);
    out(`  test: ${c.test}`);
    if (c.note) out(`  note: ${c.note}`);
    const det = r.positives !== undefined;
    out(
      `  ${cell("", 22)}${cell("threshold", 14)}${cell("tokens/1000", 14)}${
        det ? cell("requests/1000", 15) + "detected" : "requests/1000"
      }`,
    );
    const row = (name: string, a: RateAt | undefined) => {
      if (!a) return;
      out(
        `  ${cell(name, 22)}${cell(fmtNum(a.threshold), 14)}${
          cell(a.perThousandTokens.toFixed(2), 14)
        }${
          det
            ? cell(a.perThousandRequests.toFixed(2), 15) +
              `${(100 * (a.detectionRate ?? 0)).toFixed(1)}%`
            : a.perThousandRequests.toFixed(2)
        }` +
          (a.anyThresholdMeets
            ? `  (current kept: every threshold meets the target; firing wherever evaluated gives ${
              a.anyThresholdMeets.perThousandTokens.toFixed(2)
            } tokens/1000, ${a.anyThresholdMeets.perThousandRequests.toFixed(2)} requests/1000)`
            : ""),
      );
    };
    row("current", c.current);
    row("suggested (token)", c.suggested?.token);
    row("suggested (request)", c.suggested?.request);
  }
}
