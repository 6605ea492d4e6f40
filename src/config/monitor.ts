/**
 * Monitor config: one YAML file per monitored model, naming the SAEs to run,
 * the policy files to enforce, where frames come from and alerts go (NATS),
 * and the micro-batching limits. Keys are snake_case in YAML and camelCase in
 * {@linkcode MonitorConfig}; relative paths are resolved against the
 * directory of the monitor file. Documented in `docs/monitor-config.md`.
 *
 * @module
 */
import { EXECUTION_PROVIDERS, type ExecutionProviderSetting } from "../runtime/provider.ts";
import { SAE_FORMATS, type SaeFormatName } from "../core/sae.ts";
import { SINK_DEFAULTS } from "../sinks/kind.ts";
import {
  NATIVE_ALERT_SUBJECT_PREFIX,
  NATIVE_ALERT_SUBJECTS,
  PUBLISH_SUBJECT,
} from "../sinks/jetstream/mod.ts";
import { SINK_TYPES, type SinkConfig, sinkKind, SINKS } from "../sinks/registry.ts";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import type { ConfigIssue } from "./errors.ts";
import { int, nonEmpty } from "../shared/schema.ts";
import {
  choiceOf,
  duplicateIds,
  expectMessage,
  isMapping,
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
  /** `user` and the environment variable holding the password, for brokers with accounts. */
  nats: { url: string; subject?: string; user?: string; passwordEnv?: string };
  alerts: {
    stream: string;
    subject: string;
    maxQueue: number;
    /**
     * The JetStream sink's on-disk spool, where every alert is written ahead
     * before any sink sees it (docs/alert-delivery.md): its folder (absolute;
     * absent: `.latentwatch/spool/<monitor>` under the working directory) and
     * when it calls `fdatasync`.
     */
    spool: { dir?: string; fsync: SpoolFsyncSetting };
  };
  batching: {
    maxBatchTokens: number;
    maxWaitMs: number;
    maxQueueTokens: number;
    /**
     * Wait for a fuller batch only while the arrival rate can fill it within
     * `maxWaitMs`; otherwise encode at once.
     */
    adaptive: boolean;
  };
  /** Where onnxruntime runs the encoders (`docs/gpu.md`). */
  /** `spin`: let idle onnxruntime threads spin-wait (default false: the cores stay free). */
  execution: { provider: ExecutionProviderSetting; threads?: number; spin: boolean };
  /**
   * Evidence on alerts: when an alert fires, the flagged tokens are encoded in
   * full and their `topLatents` strongest latents (with labels) attached;
   * recent activations are kept in a bounded ring of `ringTokens` tokens.
   * `topLatents: 0` turns it off.
   */
  evidence: { topLatents: number; ringTokens: number };
  /** Steering commands to taps and verdicts for gated frames (`docs/steering.md`). */
  steering: { enabled: boolean; ttlMs: number };
  /**
   * The HTTP control API: its address, and how many live alert streams
   * (`/alerts/stream`) one client address may hold (default 4).
   */
  control?: { listen: string; maxStreamsPerClient?: number };
  /** Record received frames to a trace file (all, or a sample of requests). */
  record?: { path: string /* absolute */; every?: number; requests?: number };
  /**
   * Alert sinks besides the JetStream stream (which `alerts` configures and
   * which is always there): syslog, webhooks, stdout, JSONL files.
   */
  sinks: SinkConfig[];
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
export { NATIVE_ALERT_SUBJECTS, SINK_TYPES };
export type {
  FileSinkConfig,
  JetStreamRenderSinkConfig,
  SinkConfig,
  StdoutSinkConfig,
  SyslogSinkConfig,
  WebhookSinkConfig,
} from "../sinks/registry.ts";
export type { SinkConfigBase } from "../sinks/kind.ts";

/** Settings of `alerts.spool.fsync` (see `SpoolOptions.fsync` in src/sinks/spool.ts). */
export { EXECUTION_PROVIDERS, type ExecutionProviderSetting };

export const SPOOL_FSYNC = ["never", "batch", "always"] as const;

/** One of {@linkcode SPOOL_FSYNC}. */
export type SpoolFsyncSetting = (typeof SPOOL_FSYNC)[number];

/** Defaults of every optional key. */
export const MONITOR_DEFAULTS = {
  natsUrl: "nats://127.0.0.1:4222",
  alertStream: "LATENTWATCH_ALERTS",
  alertSubjectPrefix: NATIVE_ALERT_SUBJECT_PREFIX,
  maxQueue: 10000,
  spoolFsync: "never",
  maxBatchTokens: 128,
  maxWaitMs: 2,
  maxQueueTokens: 16384,
  sinkMaxQueue: SINK_DEFAULTS.maxQueue,
  sinkTimeoutMs: SINK_DEFAULTS.timeoutMs,
  steerTtlMs: 5000,
  adaptiveBatching: true,
  provider: "auto",
  evidenceTopLatents: 5,
  evidenceRingTokens: 4096,
} as const;

const NAME = /^[A-Za-z0-9_-]+$/;
const SAE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const NATS_URL = /^(nats|tls|ws|wss):\/\/[^\s/]+$/;
/** Subject filter a monitor subscribes to: wildcards `*` as a token and `>` as the last one. */
const FILTER_SUBJECT = /^([^\s.*>]+|\*)(\.([^\s.*>]+|\*))*(\.>)?$|^>$/;
const STREAM = /^[A-Za-z0-9_-]+$/;
const LISTEN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * Never valid: chosen for a mapping whose `type` is not a sink type, so the
 * error sits at that `type` and lists the types.
 */
const UnknownSinkType = z.looseObject({
  type: z.custom<never>(() => false, {
    error: expectMessage(`a sink type: one of ${SINK_TYPES.join(", ")}`),
  }),
});

/** One `sinks:` entry: the option is picked by its `type`. */
const SinkSchema = choiceOf(
  [...SINKS.map((k) => k.schema), UnknownSinkType] as unknown as [z.ZodType, ...z.ZodType[]],
  {
    expected: `a sink: a mapping with type ${SINK_TYPES.join(", ")}`,
    choose: (v) => {
      if (!isMapping(v)) return -1;
      const i = SINK_TYPES.indexOf(v.type as SinkConfig["type"]);
      return i >= 0 ? i : "type" in v ? SINK_TYPES.length : -1;
    },
  },
);

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
    user: nonEmpty.optional(),
    password_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
      error: expectMessage("the name of an environment variable holding the password"),
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
    spool: z.strictObject({
      dir: nonEmpty.optional(),
      fsync: z.enum(SPOOL_FSYNC, { error: expectMessage("never, batch or always") })
        .default(MONITOR_DEFAULTS.spoolFsync),
    }).default({ fsync: MONITOR_DEFAULTS.spoolFsync }),
  }).default({
    stream: MONITOR_DEFAULTS.alertStream,
    max_queue: MONITOR_DEFAULTS.maxQueue,
    spool: { fsync: MONITOR_DEFAULTS.spoolFsync },
  }),
  batching: z.strictObject({
    max_batch_tokens: int(1, 4096, "tokens per batch").default(MONITOR_DEFAULTS.maxBatchTokens),
    max_wait_ms: int(0, 1000, "milliseconds to wait for a fuller batch")
      .default(MONITOR_DEFAULTS.maxWaitMs),
    max_queue_tokens: int(1, 1 << 24, "tokens queued before frames are dropped")
      .default(MONITOR_DEFAULTS.maxQueueTokens),
    adaptive: z.boolean({ error: expectMessage("true or false") })
      .default(MONITOR_DEFAULTS.adaptiveBatching),
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
    adaptive: MONITOR_DEFAULTS.adaptiveBatching,
  }),
  execution: z.strictObject({
    provider: z.enum(EXECUTION_PROVIDERS, {
      error: expectMessage(`one of ${EXECUTION_PROVIDERS.join(", ")}`),
    }).default(MONITOR_DEFAULTS.provider),
    threads: int(1, 1024, "onnxruntime intra-op threads per encoder").optional(),
    spin: z.boolean({ error: expectMessage("true or false") }).default(false),
  }).default({ provider: MONITOR_DEFAULTS.provider, spin: false }),
  evidence: z.strictObject({
    top_latents: int(0, 64, "top latents attached per flagged token; 0: off")
      .default(MONITOR_DEFAULTS.evidenceTopLatents),
    ring_tokens: int(16, 1_000_000, "tokens of recent activations kept for evidence")
      .default(MONITOR_DEFAULTS.evidenceRingTokens),
  }).default({
    top_latents: MONITOR_DEFAULTS.evidenceTopLatents,
    ring_tokens: MONITOR_DEFAULTS.evidenceRingTokens,
  }),
  steering: z.strictObject({
    enabled: z.boolean({ error: expectMessage("true or false") }).default(true),
    ttl_ms: int(1, 3_600_000, "milliseconds a steering command stays valid")
      .default(MONITOR_DEFAULTS.steerTtlMs),
  }).default({ enabled: true, ttl_ms: MONITOR_DEFAULTS.steerTtlMs }),
  record: z.strictObject({
    path: nonEmpty,
    every: z.int({ error: expectMessage("an integer ≥ 1 (keep one request in N)") }).min(1, {
      error: expectMessage("an integer ≥ 1 (keep one request in N)"),
    }).optional(),
    requests: z.number({ error: expectMessage("a fraction of requests in (0, 1]") }).gt(0, {
      error: expectMessage("a fraction of requests in (0, 1]"),
    }).max(1, { error: expectMessage("a fraction of requests in (0, 1]") }).optional(),
  }).optional(),
  sinks: z.array(SinkSchema, {
    error: expectMessage(`a list of sinks ({type: ${SINK_TYPES.join("|")}, ...})`),
  }).default([]),
  control: z.strictObject({
    listen: z.string().regex(LISTEN, {
      error: expectMessage("host:port, like 127.0.0.1:8787"),
    }).refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
      error: expectMessage("a port in 0..65535"),
    }),
    max_streams_per_client: z.number({
      error: expectMessage("a whole number of streams ≥ 1"),
    }).int({ error: expectMessage("a whole number of streams ≥ 1") }).min(1, {
      error: expectMessage("a whole number of streams ≥ 1"),
    }).optional(),
  }).optional(),
});

/**
 * Validate a parsed YAML source as a monitor config. Throws
 * {@linkcode ConfigError} with every problem at its `file:line:col`.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * declare const text: string;
 * const cfg = monitorConfigFromSource(parseYamlSource(text, "/etc/lw/m.yaml"));
 * ```
 */
export function monitorConfigFromSource(src: YamlSource): MonitorConfig {
  const m = validateYaml(MonitorFileSchema, src, [
    ...duplicateIds(src, ["saes", "probes"], "SAE"),
    ...duplicateSinkNames(src),
  ]);
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
    nats: {
      url: m.nats.url,
      ...(m.nats.user !== undefined ? { user: m.nats.user } : {}),
      ...(m.nats.password_env !== undefined ? { passwordEnv: m.nats.password_env } : {}),
    },
    alerts: {
      stream: m.alerts.stream,
      subject: m.alerts.subject ?? `${MONITOR_DEFAULTS.alertSubjectPrefix}${m.monitor}`,
      maxQueue: m.alerts.max_queue,
      spool: {
        ...(m.alerts.spool.dir !== undefined ? { dir: abs(m.alerts.spool.dir) } : {}),
        fsync: m.alerts.spool.fsync,
      },
    },
    batching: {
      maxBatchTokens: m.batching.max_batch_tokens,
      maxWaitMs: m.batching.max_wait_ms,
      maxQueueTokens: m.batching.max_queue_tokens,
      adaptive: m.batching.adaptive,
    },
    execution: {
      provider: m.execution.provider,
      spin: m.execution.spin,
      ...(m.execution.threads !== undefined ? { threads: m.execution.threads } : {}),
    },
    evidence: { topLatents: m.evidence.top_latents, ringTokens: m.evidence.ring_tokens },
    steering: { enabled: m.steering.enabled, ttlMs: m.steering.ttl_ms },
    sinks: [],
  };
  // UnknownSinkType never validates, so every entry is of a registered kind
  cfg.sinks = m.sinks.map((s, i) =>
    sinkConfig(s as Parameters<typeof sinkConfig>[0], src, i, abs, m.monitor)
  );
  if (m.nats.subject !== undefined) cfg.nats.subject = m.nats.subject;
  if (m.control) {
    cfg.control = {
      listen: m.control.listen,
      ...(m.control.max_streams_per_client !== undefined
        ? { maxStreamsPerClient: m.control.max_streams_per_client }
        : {}),
    };
  }
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
 * The name a sink entry gets: `<type>:<name>` when named, else its kind's
 * default name from its destination (`syslog:<address>`, `webhook:<url
 * host>`, `stdout`, `file:<path>`, `jetstream:<subject>`).
 */
function sinkName(s: Record<string, unknown>, monitor: unknown): string | undefined {
  if (typeof s.type !== "string") return undefined;
  const kind = sinkKind(s.type);
  if (!kind) return undefined;
  if (typeof s.name === "string") return `${s.type}:${s.name}`;
  return kind.defaultName(s, monitor);
}

/** Two sinks with one name (they would share counters and log lines): each repeat reported. */
function duplicateSinkNames(src: YamlSource): ConfigIssue[] {
  const sinks = (src.value as Record<string, unknown> | null)?.sinks;
  const monitor = (src.value as Record<string, unknown> | null)?.monitor;
  if (!Array.isArray(sinks)) return [];
  const seen = new Map<string, number>();
  const issues: ConfigIssue[] = [];
  sinks.forEach((s, i) => {
    const name = isMapping(s) ? sinkName(s, monitor) : undefined;
    if (name === undefined) return;
    const at = src.locate(["sinks", i]);
    const first = seen.get(name);
    if (first === undefined) seen.set(name, at.line);
    else {
      issues.push({
        file: src.file,
        ...at,
        reason: `duplicate sink '${name}': expected sink names to be unique, found it already ` +
          `defined at line ${first}; give one a distinct 'name'`,
      });
    }
  });
  return issues;
}

/** A validated `sinks:` entry → its config, by its kind. */
function sinkConfig(
  s: { type: string; max_queue: number; timeout_ms?: number } & Record<string, unknown>,
  src: YamlSource,
  i: number,
  abs: (p: string) => string,
  monitor: string,
): SinkConfig {
  const pos = src.locate(["sinks", i]);
  const common = {
    name: sinkName(s, monitor)!,
    at: `${src.file}:${pos.line}:${pos.col}`,
    maxQueue: s.max_queue,
    // always set but on jetstream sinks, which refuse the key (and drop it)
    timeoutMs: s.timeout_ms ?? MONITOR_DEFAULTS.sinkTimeoutMs,
  };
  return sinkKind(s.type)!.config(s, { common, abs, monitor });
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
