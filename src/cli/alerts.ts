/**
 * `latentwatch alerts tail`: follow the JetStream alert stream in a
 * terminal, filtered by severity, policy and model.
 *
 * It reads through an ordered consumer: ephemeral, flow-controlled, no acks,
 * recreated by the client after a gap or a reconnect, so tailing leaves
 * nothing behind on the server and never disturbs the durable consumers of
 * the SOC pipeline. The filters run here, on the client: nats-server 2.9 has
 * one filter subject per consumer and alerts of every severity share a
 * monitor's subject anyway.
 *
 * @module
 */
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { type ConsumerMessages, DeliverPolicy, jetstream } from "@nats-io/jetstream";
import type { Alert } from "../core/alert.ts";
import type { Severity } from "../core/policy/ast.ts";
import { conditionText } from "../core/render/common.ts";
import { shownTokenText } from "../core/render/token_text.ts";
import { REDACT_MODES, redactAlert, type RedactMode, type RedactOptions } from "../core/redact.ts";
import {
  type AlertFilter,
  AlertFilterError,
  matchesAlert,
  parseAlertFilter,
} from "../serve/alert_feed.ts";
import { commandFailed, parseCommandArgs, usageError } from "./common.ts";

const USAGE = `usage: latentwatch alerts tail [--url nats://host:4222] [--stream NAME]
                               [--severity high,critical | --min-severity medium]
                               [--policy id,...] [--model name,...]
                               [--since 10m | --all] [--json] [--limit N]
                               [--redact tokens|hash [--redact-key-env VAR]]

  Follow the JetStream alert stream. Without --since or --all, only alerts
  published from now on are shown. Ctrl-C stops.

  --url <url>           NATS server(s), comma-separated (default $NATS_URL or
                        nats://127.0.0.1:4222); user:password@ in the URL, or
                        $NATS_USER and $NATS_PASSWORD, log in
  --stream <name>       the alert stream (default LATENTWATCH_ALERTS)
  --severity <list>     only these severities (info, low, medium, high, critical)
  --min-severity <s>    only this severity and above
  --policy <ids>        only alerts of these rules (policy ids)
  --model <names>       only alerts about these models
  --since <age>         start this far back: 30s, 10m, 2h, 1d, or an ISO 8601 time
  --all                 start at the beginning of the stream
  --json                one alert per line, as stored (latentwatch.alert/v1)
  --limit <n>           stop after n matching alerts
  --redact <mode>       show token text redacted: tokens ([redacted]) or hash
                        (sha256:…); what the stream holds is already redacted
                        as the monitor and rules say, this only adds to it
  --redact-key-env <v>  with --redact hash: the environment variable holding
                        the HMAC key (hmac-sha256:…, as the monitor's key gives)

  Lines are coloured on a terminal (NO_COLOR=1 turns that off) and plain when
  piped. Exit status: 0 on Ctrl-C or after --limit alerts, 1 when the server
  or the stream cannot be reached, 2 on bad usage.`;

const NAME = "alerts tail";

/** The stream `serve` publishes to unless a monitor says otherwise. */
export const DEFAULT_ALERT_STREAM = "LATENTWATCH_ALERTS";

/** What `alerts tail` was asked to do. */
export interface TailOptions {
  /** NATS servers, comma-separated; may carry `user:password@`. */
  url: string;
  stream: string;
  filter: AlertFilter;
  /** Where to start: "new" (only what comes next), "all", or a start time. */
  start: "new" | "all" | Date;
  /** Stop after this many matching alerts. */
  limit?: number;
}

/** The stream is missing or the server refused to read it. */
export class AlertTailError extends Error {
  override name = "AlertTailError";
}

/**
 * Read `--since`: an age (`30s`, `10m`, `2h`, `1d`, `500ms`) counted back
 * from `now`, or an ISO 8601 time. Returns null when it is neither.
 *
 * @example
 * ```ts
 * parseSince("10m", new Date("2026-05-01T12:10:00Z")); // 2026-05-01T12:00:00.000Z
 * ```
 */
export function parseSince(value: string, now = new Date()): Date | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (m) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2]]!;
    return new Date(now.getTime() - Number(m[1]) * unit);
  }
  // only full ISO dates: Date.parse alone accepts too much ("1", "May 5")
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return new Date(t);
  }
  return null;
}

const SEVERITY_STYLE: Record<Severity, string> = {
  critical: "\x1b[1;97;41m", // bold white on red: the one that must not be missed
  high: "\x1b[1;31m",
  medium: "\x1b[33m",
  low: "\x1b[36m",
  info: "\x1b[2m",
};
const RESET = "\x1b[0m";
const DIM = "\x1b[2m";
const BOLD = "\x1b[1m";

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/0+$/, "");
}

/**
 * One alert as one readable line: time, severity, rule, model, request,
 * token span and text, then the latent (or probe) with its label and value
 * and `by=<the condition that completed the rule>`; then, when the alert
 * lists its conditions, one indented line per condition (`conditionText`).
 * With `color`, ANSI colours mark severity and fields.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * formatAlertLine(alert, { color: false });
 * // 2026-05-01T12:00:00.000Z HIGH     prompt-injection gpt2-small req=req-1 tokens=[12,15) " ignore previous" latent=res-jb:1234 "instructions override" max=5.25 thr=3
 * ```
 */
export function formatAlertLine(alert: Alert, opts: { color: boolean }): string {
  const c = (style: string, s: string) => opts.color ? `${style}${s}${RESET}` : s;
  const sev = (alert.severity ?? "info").toUpperCase().padEnd(8);
  const l = alert.latent;
  const signal = l?.signal === "probe" ? "probe" : "latent";
  const fields = [
    c(DIM, alert.time),
    c(SEVERITY_STYLE[alert.severity] ?? "", sev),
    c(BOLD, alert.policy?.id ?? "?"),
    alert.model,
    `req=${alert.requestId}`,
  ];
  if (alert.tokens) fields.push(`tokens=[${alert.tokens.start},${alert.tokens.end})`);
  const text = shownTokenText(alert.evidence ?? []);
  if (text) fields.push(c("\x1b[35m", text));
  if (l) {
    fields.push(`${signal}=${l.sae}:${l.index}`);
    if (l.label) fields.push(c("\x1b[32m", JSON.stringify(l.label)));
    fields.push(`max=${num(l.max)}`);
    if (l.threshold !== undefined) fields.push(c(DIM, `thr=${num(l.threshold)}`));
  }
  if (alert.completedBy !== undefined) fields.push(`by=${alert.completedBy}`);
  // then each condition of the rule on its own indented line
  const conditions = (alert.conditions ?? []).map((x) => c(DIM, `    ${conditionText(x)}`));
  return [fields.join(" "), ...conditions].join("\n");
}

/** Split `nats://user:pass@host:4222,...` into servers and the one login found. */
function serversAndLogin(url: string): Pick<ConnectionOptions, "servers" | "user" | "pass"> {
  let user = Deno.env.get("NATS_USER") || undefined;
  let pass = Deno.env.get("NATS_PASSWORD") || undefined;
  const servers = url.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
    const withScheme = s.includes("://") ? s : `nats://${s}`;
    try {
      const u = new URL(withScheme);
      if (u.username) {
        user = decodeURIComponent(u.username);
        pass = decodeURIComponent(u.password);
        u.username = "";
        u.password = "";
        return `${u.protocol}//${u.host}`;
      }
    } catch { /* leave it to the client to report */ }
    return s;
  });
  return { servers, user, pass };
}

/**
 * Follow `opts.stream` and call `onAlert` with each alert that passes the
 * filter, until `signal` aborts or `opts.limit` alerts were handed over.
 * Messages that are not JSON alerts are reported to `onSkip` and skipped.
 * Resolves with the number of alerts handed over.
 *
 * @example
 * ```ts
 * const ac = new AbortController();
 * await tailAlerts(
 *   { url: "nats://127.0.0.1:4222", stream: "LATENTWATCH_ALERTS", filter: {}, start: "all" },
 *   (alert) => console.log(alert.id),
 *   { signal: ac.signal },
 * );
 * ```
 */
export async function tailAlerts(
  opts: TailOptions,
  onAlert: (alert: Alert, subject: string) => void | Promise<void>,
  hooks: { signal?: AbortSignal; onReady?: () => void; onSkip?: (why: string) => void } = {},
): Promise<number> {
  const nc: NatsConnection = await connect({
    ...serversAndLogin(opts.url),
    name: "latentwatch-alerts-tail",
    // a tail is watched by a person: keep following through server restarts
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
  }).catch((err) => {
    throw new AlertTailError(`cannot reach NATS at ${redact(opts.url)}: ${(err as Error).message}`);
  });
  let messages: ConsumerMessages | undefined;
  const stop = () => {
    messages?.stop();
  };
  hooks.signal?.addEventListener("abort", stop, { once: true });
  let shown = 0;
  try {
    const js = jetstream(nc);
    const start = opts.start;
    const consumer = await js.consumers.get(opts.stream, {
      ...(start === "all"
        ? { deliver_policy: DeliverPolicy.All }
        : start === "new"
        ? { deliver_policy: DeliverPolicy.New }
        : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: start.toISOString() }),
    }).catch((err) => {
      throw new AlertTailError(`cannot read stream '${opts.stream}': ${(err as Error).message}`);
    });
    if (hooks.signal?.aborted) return 0;
    messages = await consumer.consume({ max_messages: 256 });
    hooks.onReady?.();
    if (hooks.signal?.aborted) return 0;
    for await (const m of messages) {
      let alert: Alert;
      try {
        alert = m.json<Alert>();
      } catch {
        hooks.onSkip?.(`seq ${m.seq} on ${m.subject}: not JSON`);
        continue;
      }
      if (typeof alert !== "object" || alert === null || typeof alert.severity !== "string") {
        hooks.onSkip?.(`seq ${m.seq} on ${m.subject}: not a latentwatch alert`);
        continue;
      }
      if (!matchesAlert(alert, opts.filter)) continue;
      await onAlert(alert, m.subject);
      shown++;
      if (opts.limit !== undefined && shown >= opts.limit) break;
    }
  } finally {
    hooks.signal?.removeEventListener("abort", stop);
    stop();
    await nc.close();
  }
  return shown;
}

/**
 * The redaction `--redact` and `--redact-key-env` ask for, or what is wrong
 * with them (a usage error).
 *
 * @example
 * ```ts
 * tailRedaction("tokens", undefined); // { mode: "tokens" }
 * tailRedaction("secret", undefined); // "--redact: expected one of none, hash, tokens, found 'secret'"
 * ```
 */
export function tailRedaction(
  mode: string | undefined,
  keyEnv: string | undefined,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): RedactOptions | string {
  if (mode === undefined) {
    return keyEnv === undefined ? { mode: "none" } : "--redact-key-env needs --redact hash";
  }
  if (!(REDACT_MODES as readonly string[]).includes(mode)) {
    return `--redact: expected one of ${REDACT_MODES.join(", ")}, found '${mode}'`;
  }
  if (keyEnv === undefined) return { mode: mode as RedactMode };
  if (mode !== "hash") return `--redact-key-env: expected --redact hash, found --redact ${mode}`;
  const key = env(keyEnv);
  if (!key) {
    return `--redact-key-env: expected environment variable ${keyEnv} to hold the key, ` +
      `found it ${key === undefined ? "unset" : "empty"}`;
  }
  return { mode: "hash", hashKey: key };
}

/** `url` without the password of a `user:password@` login, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/[^@/,]*@/g, "//");
}

/** `latentwatch alerts <subcommand>`; only `tail` for now. */
export async function runAlertsCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    console.log(USAGE);
    return 0;
  }
  if (sub !== "tail") return usageError("alerts", USAGE, `unknown subcommand '${sub ?? ""}'`);
  const parsed = parseCommandArgs(NAME, USAGE, rest, {
    url: { type: "string" },
    stream: { type: "string" },
    severity: { type: "string" },
    "min-severity": { type: "string" },
    policy: { type: "string" },
    model: { type: "string" },
    since: { type: "string" },
    all: { type: "boolean" },
    json: { type: "boolean" },
    limit: { type: "string" },
    redact: { type: "string" },
    "redact-key-env": { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const v = parsed.values;
  if (parsed.positionals.length > 0) {
    return usageError(NAME, USAGE, `unexpected argument '${parsed.positionals[0]}'`);
  }
  let filter: AlertFilter;
  try {
    filter = parseAlertFilter({
      severity: v.severity,
      minSeverity: v["min-severity"],
      policy: v.policy,
      model: v.model,
    });
  } catch (err) {
    if (err instanceof AlertFilterError) return usageError(NAME, USAGE, err.message);
    throw err;
  }
  if (v.since !== undefined && v.all) return usageError(NAME, USAGE, "give --since or --all");
  let start: TailOptions["start"] = v.all ? "all" : "new";
  if (v.since !== undefined) {
    const at = parseSince(v.since);
    if (!at) return usageError(NAME, USAGE, `--since: expected 10m, 2h, 1d or an ISO time`);
    start = at;
  }
  let limit: number | undefined;
  if (v.limit !== undefined) {
    limit = Number(v.limit);
    if (!Number.isInteger(limit) || limit < 1) {
      return usageError(NAME, USAGE, `--limit: expected a whole number ≥ 1, found '${v.limit}'`);
    }
  }
  const redaction = tailRedaction(v.redact, v["redact-key-env"]);
  if (typeof redaction === "string") return usageError(NAME, USAGE, redaction);
  const opts: TailOptions = {
    url: v.url ?? Deno.env.get("NATS_URL") ?? "nats://127.0.0.1:4222",
    stream: v.stream ?? DEFAULT_ALERT_STREAM,
    filter,
    start,
    limit,
  };
  const color = !v.json && Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");

  const ac = new AbortController();
  const onSignal = () => ac.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const enc = new TextEncoder();
  try {
    await tailAlerts(opts, async (stored) => {
      const alert = redactAlert(stored, redaction);
      const line = v.json ? JSON.stringify(alert) : formatAlertLine(alert, { color });
      try {
        await Deno.stdout.write(enc.encode(line + "\n"));
      } catch (err) {
        // the reader went away (`| head`): stop quietly, like other Unix tools
        if (err instanceof Deno.errors.BrokenPipe) ac.abort();
        else throw err;
      }
    }, {
      signal: ac.signal,
      onReady: () =>
        console.error(
          `alerts tail: following ${opts.stream} at ${redact(opts.url)} (${
            describeStart(start)
          }; Ctrl-C stops)`,
        ),
      onSkip: (why) => console.error(`alerts tail: skipped ${why}`),
    });
    return 0;
  } catch (err) {
    return commandFailed(NAME, err);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

function describeStart(start: TailOptions["start"]): string {
  if (start === "all") return "from the start";
  if (start === "new") return "new alerts";
  return `since ${start.toISOString()}`;
}
