/**
 * Monitor config: one YAML file per monitored model, naming the SAEs to run,
 * the policy files to enforce, where frames come from and alerts go (NATS),
 * and the micro-batching limits. Keys are snake_case in YAML and camelCase in
 * {@linkcode MonitorConfig}; relative paths are resolved against the
 * directory of the monitor file. Documented in `docs/monitor-config.md`.
 *
 * @module
 */
import { SAE_FORMATS, type SaeFormatName } from "../core/sae.ts";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import {
  duplicateIds,
  expectMessage,
  loadYamlSource,
  parseYamlSource,
  validateYaml,
  type YamlSource,
} from "./yaml_source.ts";

/** A validated monitor config with defaults applied and paths made absolute. */
export interface MonitorConfig {
  /** The monitor file, as given. */
  file: string;
  /** Monitor name: `[A-Za-z0-9_-]+`. */
  monitor: string;
  model: string;
  hook: string;
  /** At least one; ids are unique (across SAEs and probes). */
  saes: MonitorSae[];
  /** Linear probes run beside the SAEs; policies name them with `probe:`. */
  probes: { id: string; path: string /* absolute */ }[];
  /** Policy files, absolute paths, at least one. */
  policies: string[];
  nats: { url: string; subject?: string };
  alerts: { stream: string; subject: string; maxQueue: number };
  batching: { maxBatchTokens: number; maxWaitMs: number; maxQueueTokens: number };
  control?: { listen: string };
  /** Record received frames to a trace file (all, or a sample of requests). */
  record?: { path: string /* absolute */; every?: number; requests?: number };
}

/** One SAE of a monitor. */
export interface MonitorSae {
  id: string;
  /** Absolute path of the SAE folder or file. */
  path: string;
  /** Upstream format; detected from the files when absent. */
  format?: SaeFormatName;
  /** Neuronpedia explanations export (absolute); an `explanations/` folder beside the SAE otherwise. */
  labels?: string;
  /** SAELens `expected_average_only_in` scaling factor, when the SAE folder does not carry it. */
  scalingFactor?: number;
}

export { SAE_FORMATS, type SaeFormatName };

/** Defaults of every optional key. */
export const MONITOR_DEFAULTS = {
  natsUrl: "nats://127.0.0.1:4222",
  alertStream: "LATENTWATCH_ALERTS",
  alertSubjectPrefix: "latentwatch.alerts.",
  maxQueue: 10000,
  maxBatchTokens: 128,
  maxWaitMs: 2,
  maxQueueTokens: 16384,
} as const;

const NAME = /^[A-Za-z0-9_-]+$/;
const SAE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s/]+$/;
/** Subject a monitor publishes to: dot-separated tokens, no wildcards, no spaces. */
const PUBLISH_SUBJECT = /^[^\s.*>]+(\.[^\s.*>]+)*$/;
/** Subject filter a monitor subscribes to: wildcards `*` as a token and `>` as the last one. */
const FILTER_SUBJECT = /^([^\s.*>]+|\*)(\.([^\s.*>]+|\*))*(\.>)?$|^>$/;
const STREAM = /^[A-Za-z0-9_-]+$/;
const LISTEN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

const nonEmpty = z.string().trim().min(1);
const int = (lo: number, hi: number, what: string) => {
  const error = expectMessage(`an integer in ${lo}..${hi} (${what})`);
  return z.int({ error }).min(lo, { error }).max(hi, { error });
};

/** The zod schema of a monitor file (YAML keys as written). */
export const MonitorFileSchema = z.strictObject({
  monitor: z.string().regex(NAME, {
    error: expectMessage("a monitor name of letters, digits, '_' or '-' ([A-Za-z0-9_-]+)"),
  }),
  model: nonEmpty,
  hook: nonEmpty,
  saes: z.array(z.strictObject({
    id: z.string().regex(SAE_ID, {
      error: expectMessage("an SAE id of letters, digits, '.', '_' or '-'"),
    }),
    path: nonEmpty,
    format: z.enum(SAE_FORMATS, {
      error: expectMessage(`one of ${SAE_FORMATS.join(", ")}`),
    }).optional(),
    labels: nonEmpty.optional(),
    scaling_factor: z.number({ error: expectMessage("a positive number") }).positive({
      error: expectMessage("a positive number"),
    }).optional(),
  })).min(1, { error: expectMessage("a list of at least one SAE ({id, path})") }),
  probes: z.array(z.strictObject({
    id: z.string().regex(SAE_ID, {
      error: expectMessage("a probe id of letters, digits, '.', '_' or '-'"),
    }),
    path: nonEmpty,
  })).default([]),
  policies: z.array(nonEmpty).min(1, {
    error: expectMessage("a list of at least one policy file"),
  }),
  nats: z.strictObject({
    url: z.string().regex(NATS_URL, {
      error: expectMessage("a NATS URL like nats://host:port"),
    }).default(MONITOR_DEFAULTS.natsUrl),
    subject: z.string().regex(FILTER_SUBJECT, {
      error: expectMessage("a NATS subject filter like latentwatch.tap.> (no spaces)"),
    }).optional(),
  }).default({ url: MONITOR_DEFAULTS.natsUrl }),
  alerts: z.strictObject({
    stream: z.string().regex(STREAM, {
      error: expectMessage("a JetStream stream name of letters, digits, '_' or '-'"),
    }).default(MONITOR_DEFAULTS.alertStream),
    subject: z.string().regex(PUBLISH_SUBJECT, {
      error: expectMessage("a NATS subject without wildcards or spaces, like latentwatch.alerts.x"),
    }).optional(),
    max_queue: int(1, 10_000_000, "the number of alerts buffered while NATS is down")
      .default(MONITOR_DEFAULTS.maxQueue),
  }).default({ stream: MONITOR_DEFAULTS.alertStream, max_queue: MONITOR_DEFAULTS.maxQueue }),
  batching: z.strictObject({
    max_batch_tokens: int(1, 4096, "tokens per batch").default(MONITOR_DEFAULTS.maxBatchTokens),
    max_wait_ms: int(0, 1000, "milliseconds to wait for a fuller batch")
      .default(MONITOR_DEFAULTS.maxWaitMs),
    max_queue_tokens: int(1, 1 << 24, "tokens queued before frames are dropped")
      .default(MONITOR_DEFAULTS.maxQueueTokens),
  }).check((ctx) => {
    const b = ctx.value;
    if (b.max_queue_tokens < b.max_batch_tokens) {
      ctx.issues.push({
        code: "custom",
        input: b.max_queue_tokens,
        path: ["max_queue_tokens"],
        message: `expected max_queue_tokens ≥ max_batch_tokens (${b.max_batch_tokens}), ` +
          `found ${b.max_queue_tokens}; the queue must hold at least one full batch`,
      });
    }
  }).default({
    max_batch_tokens: MONITOR_DEFAULTS.maxBatchTokens,
    max_wait_ms: MONITOR_DEFAULTS.maxWaitMs,
    max_queue_tokens: MONITOR_DEFAULTS.maxQueueTokens,
  }),
  record: z.strictObject({
    path: nonEmpty,
    every: z.int({ error: expectMessage("an integer ≥ 1 (keep one request in N)") }).min(1, {
      error: expectMessage("an integer ≥ 1 (keep one request in N)"),
    }).optional(),
    requests: z.number({ error: expectMessage("a fraction of requests in (0, 1]") }).gt(0, {
      error: expectMessage("a fraction of requests in (0, 1]"),
    }).max(1, { error: expectMessage("a fraction of requests in (0, 1]") }).optional(),
  }).optional(),
  control: z.strictObject({
    listen: z.string().regex(LISTEN, {
      error: expectMessage("host:port, like 127.0.0.1:8787"),
    }).refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
      error: expectMessage("a port in 0..65535"),
    }),
  }).optional(),
});

/**
 * Validate a parsed YAML source as a monitor config. Throws
 * {@linkcode ConfigError} with every problem at its `file:line:col`.
 *
 * @example
 * ```ts
 * const cfg = monitorConfigFromSource(parseYamlSource(text, "/etc/lw/m.yaml"));
 * ```
 */
export function monitorConfigFromSource(src: YamlSource): MonitorConfig {
  const m = validateYaml(MonitorFileSchema, src, duplicateIds(src, ["saes", "probes"], "SAE"));
  const base = dirname(resolve(src.file));
  const abs = (p: string) => isAbsolute(p) ? resolve(p) : resolve(base, p);
  const cfg: MonitorConfig = {
    file: src.file,
    monitor: m.monitor,
    model: m.model,
    hook: m.hook,
    saes: m.saes.map((s) => ({
      id: s.id,
      path: abs(s.path),
      ...(s.format ? { format: s.format } : {}),
      ...(s.labels ? { labels: abs(s.labels) } : {}),
      ...(s.scaling_factor !== undefined ? { scalingFactor: s.scaling_factor } : {}),
    })),
    probes: m.probes.map((p) => ({ id: p.id, path: abs(p.path) })),
    policies: m.policies.map(abs),
    nats: { url: m.nats.url },
    alerts: {
      stream: m.alerts.stream,
      subject: m.alerts.subject ?? `${MONITOR_DEFAULTS.alertSubjectPrefix}${m.monitor}`,
      maxQueue: m.alerts.max_queue,
    },
    batching: {
      maxBatchTokens: m.batching.max_batch_tokens,
      maxWaitMs: m.batching.max_wait_ms,
      maxQueueTokens: m.batching.max_queue_tokens,
    },
  };
  if (m.nats.subject !== undefined) cfg.nats.subject = m.nats.subject;
  if (m.control) cfg.control = { listen: m.control.listen };
  if (m.record) {
    cfg.record = {
      path: abs(m.record.path),
      ...(m.record.every !== undefined ? { every: m.record.every } : {}),
      ...(m.record.requests !== undefined ? { requests: m.record.requests } : {}),
    };
  }
  return cfg;
}

/**
 * Parse and validate monitor config text read from `file` (relative paths in
 * it are resolved against `file`'s directory).
 *
 * @example
 * ```ts
 * const cfg = parseMonitorConfig(
 *   "monitor: demo\nmodel: sim-gpt\nhook: blocks.6.hook_resid_post\n" +
 *     "saes: [{id: demo-res, path: ./sae}]\npolicies: [./p.yaml]\n",
 *   "/srv/lw/demo.yaml",
 * );
 * cfg.saes[0].path; // "/srv/lw/sae"
 * cfg.alerts.subject; // "latentwatch.alerts.demo"
 * ```
 */
export function parseMonitorConfig(text: string, file: string): MonitorConfig {
  return monitorConfigFromSource(parseYamlSource(text, file));
}

/**
 * Read, parse and validate a monitor config file. Throws
 * {@linkcode ConfigError} (an unreadable file is reported at `path:1:1`).
 *
 * @example
 * ```ts
 * const cfg = await loadMonitorConfig("monitors/demo.yaml");
 * ```
 */
export async function loadMonitorConfig(path: string): Promise<MonitorConfig> {
  return monitorConfigFromSource(await loadYamlSource(path));
}
