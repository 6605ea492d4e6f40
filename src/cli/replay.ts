/**
 * `latentwatch replay <trace> --monitor <file> [--json]`: run a monitor's
 * SAEs, probes and policies OFFLINE over a recorded trace
 * (`docs/traces.md`) and print the alerts: readable lines by default, one
 * JSON object per alert with `--json`, or the alerts exactly as `serve`
 * publishes them with `--alerts` (the same stages build them:
 * `src/pipeline/`). Progress and a summary go to stderr.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { alertConditions } from "../pipeline/alert.ts";
import { conditionText } from "../core/render/common.ts";
import { shownTokenText } from "../core/render/token_text.ts";
import { loadMonitorConfig } from "../config/monitor.ts";
import { Logger } from "../shared/log.ts";
import { loadOfflineMonitor } from "../traces/offline.ts";
import { type ReplayFiring, type ReplayStats, replayTrace } from "../traces/replay.ts";
import { readTraceHeader } from "../traces/reader.ts";
import { commandFailed, parseCommandArgs, usageError } from "./common.ts";
import { progressText } from "./policy_format.ts";

const USAGE = `usage: latentwatch replay <trace> --monitor <file> [--json|--alerts] [--quiet]

  Run the monitor's SAEs, probes and policies offline over a recorded trace
  (plain or .gz; format in docs/traces.md) and print the alerts it raises,
  in recorded order. Frames the sidecar would reject are reported on stderr
  and skipped. The policy engine's clock is the recorded receive time.

  --monitor <file>  the monitor config (SAEs, probes, policy files)
  --json            one JSON object per alert on stdout
  --alerts          each alert as serve publishes it (latentwatch.alert/v1,
                    evidence attached; its time is the recorded receive time)
  --quiet           no progress or summary on stderr

  Exit status: 0 when the trace was replayed (alerts or not), 1 when the
  trace or monitor cannot be read, 2 on bad usage.`;

const COLORS: Record<string, string> = {
  critical: "\x1b[1;97;41m",
  high: "\x1b[1;31m",
  medium: "\x1b[33m",
  low: "\x1b[36m",
  info: "\x1b[2m",
};

/**
 * Run `replay ...` and return the exit code.
 *
 * @example
 * ```ts
 * await runReplayCommand([".latentwatch/demo/demo.trace.gz", "--monitor", "monitors/demo.yaml"]);
 * ```
 */
export async function runReplayCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("replay", USAGE, args, {
    monitor: { type: "string" },
    json: { type: "boolean" },
    alerts: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1 || !values.monitor) {
    return usageError("replay", USAGE, "expected one trace and --monitor <file>");
  }
  if (values.json && values.alerts) {
    return usageError("replay", USAGE, "expected one of --json and --alerts, found both");
  }
  const tracePath = positionals[0];
  const note = (s: string) => {
    if (!values.quiet) console.error(s);
  };
  const color = !values.json && !values.alerts && !Deno.env.get("NO_COLOR") &&
    Deno.stdout.isTerminal();

  let monitor;
  try {
    const header = await readTraceHeader(tracePath);
    const config = await loadMonitorConfig(values.monitor);
    note(
      `replay: ${tracePath}: recorded by monitor '${header.monitor}' on ${header.model} @ ${header.hook}, ` +
        `created ${header.created}${
          Object.keys(header.sampling).length ? `, sampled ${JSON.stringify(header.sampling)}` : ""
        }`,
    );
    if (header.model !== config.model || header.hook !== config.hook) {
      note(
        `replay: warning: the trace is of ${header.model} @ ${header.hook}, the monitor watches ` +
          `${config.model} @ ${config.hook}: its frames will be rejected`,
      );
    }
    monitor = await loadOfflineMonitor(config, {
      log: new Logger({ quiet: values.quiet ?? false }),
    });
  } catch (err) {
    return commandFailed("replay", err);
  }

  const print = (f: ReplayFiring) => {
    if (values.json) {
      console.log(JSON.stringify(firingJson(f)));
      return;
    }
    const d = f.rule.def;
    const tag = `[${d.severity.toUpperCase()}]`;
    const pos = f.positions.length === 1
      ? `token ${f.positions[0]}`
      : `tokens ${positionsText(f.positions)}`;
    const sig = f.signal.kind === "probe"
      ? `probe ${f.signal.encoder}/${f.signal.index}`
      : `latent ${f.signal.encoder}/${f.signal.index}${
        f.signal.label ? ` "${f.signal.label}"` : ""
      }`;
    const shown = shownTokenText(
      f.positions.map((position, i) => ({ position, text: f.text?.[i] })),
    );
    const words = shown !== undefined ? `: ${shown}` : "";
    const kind = f.alert ? "" : " (steer only)";
    console.log(
      `${
        color ? `${COLORS[d.severity] ?? ""}${tag}\x1b[0m` : tag
      } ${d.title}${kind}  (rule ${d.id})\n` +
        `    request ${f.requestId}, ${pos}${words}\n` +
        `    ${sig} value ${round(f.value)}; record ${f.record} at ${
          new Date(f.receivedAt).toISOString()
        }` +
        (f.description ? `\n    ${f.description}` : "") +
        `\n    conditions (completed by ${f.rule.conditions[f.completedBy].name}):` +
        alertConditions(f).map((c) => `\n      ${conditionText(c)}`).join("") +
        (f.steer.length ? `\n    steer: ${f.steer.map((s) => JSON.stringify(s)).join(", ")}` : ""),
    );
  };

  let rejectedShown = 0;
  try {
    // the monitor's redaction (keyed when its key variable is set here) and each rule's
    const keyEnv = monitor.config.redaction.hashKeyEnv;
    const hashKey = keyEnv ? Deno.env.get(keyEnv) : undefined;
    const stats = await replayTrace(monitor, tracePath, {
      redaction: { mode: monitor.config.redaction.default, ...(hashKey ? { hashKey } : {}) },
      ...(values.alerts
        ? { onAlert: (a: Alert) => console.log(JSON.stringify(a)) }
        : { onFiring: print }),
      onProgress: (p) => note(`replay: ${progressText(p)}`),
      onRejected: ({ record, error }) => {
        // like the sidecar: each bad frame is reported and skipped; a flood is cut short
        if (rejectedShown++ < 20) {
          note(`replay: record ${record.record}: rejected: ${error.message}`);
        }
      },
    });
    note(replaySummary(stats, { alerts: values.alerts ?? false }));
  } catch (err) {
    return commandFailed("replay", err);
  } finally {
    await monitor.close();
  }
  return 0;
}

/**
 * The summary `replay` prints on stderr. Its count is of firings (steer-only
 * ones included, as the readable and `--json` outputs list them), or of
 * alerts with `--alerts` (the lines it printed).
 *
 * @example
 * ```ts
 * import type { ReplayStats } from "../traces/replay.ts";
 * declare const stats: ReplayStats;
 * console.error(replaySummary(stats, { alerts: true }));
 * ```
 */
export function replaySummary(stats: ReplayStats, opts: { alerts: boolean }): string {
  return `replay: ${stats.records} records, ${stats.frames} frames, ${stats.tokens} tokens, ${stats.requests} requests, ` +
    (opts.alerts ? `${stats.alerts} alert(s)` : `${stats.firings} alert(s)`) +
    (stats.rejected ? `, ${stats.rejected} frame(s) rejected` : "") +
    (stats.lost ? `, ${stats.lost} frame(s) missing by Lw-Seq` : "") +
    (stats.repeated ? `, ${stats.repeated} frame(s) with a repeated Lw-Seq dropped` : "") +
    (stats.tooLarge
      ? `, ${stats.tooLarge} frame(s) over max_queue_tokens dropped (frame_too_large)`
      : "") +
    (stats.droppedWhileRecording
      ? `, ${stats.droppedWhileRecording} frame(s) dropped while recording`
      : "") +
    (stats.complete
      ? ""
      : "; no end record (the recorder did not close cleanly, or is still writing)");
}

/** The JSON form of a firing (`--json`), one object per alert. */
export function firingJson(f: ReplayFiring): Record<string, unknown> {
  const d = f.rule.def;
  return {
    rule: d.id,
    title: d.title,
    severity: d.severity,
    tags: d.tags,
    source: d.source,
    requestId: f.requestId,
    positions: f.positions,
    ...(f.text ? { text: f.text } : {}),
    value: f.value,
    signal: f.signal,
    completedBy: f.rule.conditions[f.completedBy].name,
    conditions: alertConditions(f),
    description: f.description,
    dedupKey: f.dedupKey,
    alert: f.alert,
    steer: f.steer,
    record: f.record,
    receivedAt: new Date(f.receivedAt).toISOString(),
  };
}

/** `4–7` for a contiguous run, `4, 6, 7` otherwise. */
export function positionsText(p: readonly number[]): string {
  const contiguous = p.every((x, i) => i === 0 || x === p[i - 1] + 1);
  return contiguous && p.length > 1 ? `${p[0]}–${p[p.length - 1]}` : p.join(", ");
}

function round(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}
