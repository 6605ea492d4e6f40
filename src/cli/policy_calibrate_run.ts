/**
 * Running a calibration: replay benign traces (and, with `--positives`,
 * traces to catch) through each rule's trigger test or a chosen condition,
 * pooled as the engine pools it, and report the alert rates at the current
 * threshold and at the thresholds suggested for a false-positive target, per
 * token and per request ({@linkcode CalibrationReport}). The command, its
 * output and `--write` are `policy_calibrate.ts`; the quantiles and pooling
 * `src/traces/calibrate.ts`.
 *
 * @module
 */
import {
  conditionRefs,
  describeTrigger,
  passRate,
  PooledCollector,
  selectCondition,
  suggestThreshold,
  triggerTest,
} from "../traces/calibrate.ts";
import { type OfflineMonitor } from "../traces/offline.ts";
import { replayTrace } from "../traces/replay.ts";
import { progressText, rel } from "./policy_format.ts";

/** The rates of one threshold. */
export interface RateAt {
  threshold: number;
  /**
   * Every threshold meets the target (fewer evaluations than the false
   * positives allowed): the current threshold is kept, and these are the
   * rates of the rule firing wherever it is evaluated, the worst case.
   */
  anyThresholdMeets?: { perThousandTokens: number; perThousandRequests: number };
  /** With `--positives`: fraction of the positive requests on which the test holds at least once. */
  detectionRate?: number;
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
  /** The rule's threshold tests, `#index name: test (file:line)`, for `--condition`. */
  conditions?: string[];
  composite?: boolean;
  /** Where the calibrated test's threshold is written, and its comparison. */
  testSource?: { file: string; line: number; col?: number; op: "above" | "below" };
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
  /** With `--positives`: the positive traces and their requests. */
  positives?: { traces: string[]; requests: number };
  rules: RuleCalibration[];
}

/** Options of {@linkcode calibrate}. */
export interface CalibrateOptions {
  /** Traces whose requests are all positives: the detection rate at each threshold is reported. */
  positives?: string[];
  /** Calibrate this condition (1-based index or name, see `conditionRefs`) instead of the trigger. */
  condition?: string;
  /** Only these rules (by id); all when absent. */
  rules?: string[];
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
  options: CalibrateOptions = {},
): Promise<CalibrationReport> {
  const rules: RuleCalibration[] = [];
  const collectors: { cal: RuleCalibration; c: PooledCollector; pos: PooledCollector }[] = [];
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
      if (options.rules && !options.rules.includes(def.id)) {
        rules.pop();
        continue;
      }
      const refs = conditionRefs(rule);
      if (refs.length > 1) {
        cal.conditions = refs.map((r) =>
          `#${r.index} ${r.condition} at ${r.name}: ${
            describeTrigger({ tests: [rule.tests[r.leaf.test]], ...r.leaf })
          } (${rel(r.leaf.source.file)}:${r.leaf.source.line})`
        );
      }
      let trig;
      if (options.condition !== undefined) {
        const sel = selectCondition(rule, options.condition);
        if (typeof sel === "string") {
          cal.skipped = sel;
          continue;
        }
        trig = sel;
      } else {
        trig = triggerTest(rule);
      }
      if (!trig) {
        cal.skipped = "no trigger test outside a 'not' to calibrate";
        continue;
      }
      cal.test = describeTrigger(trig);
      cal.testSource = { ...trig.source, op: trig.op };
      cal.composite = trig.composite;
      if (trig.note) cal.note = trig.note;
      collectors.push({
        cal,
        c: new PooledCollector(trig, rule.scope),
        pos: new PooledCollector(trig, rule.scope),
      });
    }
  }
  const feed = async (paths: string[], which: "c" | "pos") => {
    let tokens = 0;
    const requests = new Set<string>();
    for (const path of paths) {
      await replayTrace(monitor, path, {
        onProgress: (p) => onProgress?.(`${rel(p.path)}: ${progressText(p)}`),
        onBatch: (batch) => {
          for (const { frame, firstRow } of batch.frames) {
            tokens += frame.tokens;
            // the same request id in two traces is two requests
            requests.add(`${path}\0${frame.requestId}`);
            for (const entry of collectors) {
              const c = entry[which];
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
    return { tokens, requests: requests.size };
  };
  const { tokens, requests: nReq } = await feed(traces, "c");
  const positives = options.positives?.length ? await feed(options.positives, "pos") : null;
  for (const { cal, c, pos } of collectors) {
    const op = c.trigger.op;
    const reqValues = [...c.requestValues.values()];
    const posValues = [...pos.requestValues.values()];
    const at = (threshold: number): RateAt => ({
      threshold,
      perThousandTokens: 1000 * passRate(c.tokenValues, tokens, op, threshold),
      perThousandRequests: 1000 * passRate(reqValues, nReq, op, threshold),
      ...(positives
        ? { detectionRate: passRate(posValues, positives.requests, op, threshold) }
        : {}),
    });
    // null: even firing wherever evaluated stays within the target; keep the current threshold
    const suggest = (t: number | null): RateAt =>
      t !== null ? at(t) : {
        ...at(c.trigger.threshold),
        anyThresholdMeets: {
          perThousandTokens: 1000 * c.tokenValues.length / Math.max(1, tokens),
          perThousandRequests: 1000 * reqValues.length / Math.max(1, nReq),
        },
      };
    cal.current = at(c.trigger.threshold);
    cal.suggested = {};
    if (per.includes("token")) {
      cal.suggested.token = suggest(suggestThreshold(c.tokenValues, tokens, targetFpr, op));
    }
    if (per.includes("request")) {
      cal.suggested.request = suggest(suggestThreshold(reqValues, nReq, targetFpr, op));
    }
  }
  return {
    monitor: monitor.config.monitor,
    traces,
    targetFpr,
    tokens,
    requests: nReq,
    ...(positives
      ? { positives: { traces: options.positives!, requests: positives.requests } }
      : {}),
    rules,
  };
}
