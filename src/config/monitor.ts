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
import { RENDERING_SHAPES, renderSubject } from "../sinks/renderings.ts";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import type { ConfigIssue } from "./errors.ts";
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

/** What every sink config has. */
export interface SinkConfigBase {
  /** Unique sink name, `<type>:<name or destination>` (logs, metrics). */
  name: string;
  /** Where the sink is written, `file:line:col`, for errors found when it starts. */
  at: string;
  maxQueue: number;
  timeoutMs: number;
}

/** `type: syslog`: RFC 5424 over TCP (octet counting) or TLS. */
export interface SyslogSinkConfig extends SinkConfigBase {
  type: "syslog";
  host: string;
  port: number;
  /** Absolute paths; present (possibly empty) when TLS is on. */
  tls?: { ca?: string; serverName?: string; cert?: string; key?: string };
  format: "json" | "cef" | "ocsf" | "ecs";
  appName: string;
  hostname?: string;
  facility: number;
  maxMessageBytes: number;
  maxBackoffMs: number;
}

/** `type: webhook`: HTTP POST of JSON or a Splunk HEC event. */
export interface WebhookSinkConfig extends SinkConfigBase {
  type: "webhook";
  url: string;
  shape: "json" | "splunk-hec";
  format: "json" | "ocsf" | "ecs";
  headers: Record<string, string>;
  /** Environment variable holding the token (Splunk HEC token, or a bearer token for `json`). */
  tokenEnv?: string;
  splunk?: { index?: string; source?: string; sourcetype?: string; host?: string };
  maxAttempts: number;
  maxBackoffMs: number;
}

/** `type: stdout`: one JSON line per alert. */
export interface StdoutSinkConfig extends SinkConfigBase {
  type: "stdout";
  format: "json" | "ocsf" | "ecs";
}

/** `type: file`: JSONL appended to a file, rotated by size. */
export interface FileSinkConfig extends SinkConfigBase {
  type: "file";
  /** Absolute. */
  path: string;
  format: "json" | "ocsf" | "ecs";
  fsync: "always" | "never";
  maxBytes: number;
  keep: number;
}

/**
 * `type: jetstream`: one rendering of each alert published on its own
 * subject of the alert stream (`alerts.stream`), durably (spool, dedup), for
 * forwarders such as Vector (deploy/vector/) to send on unchanged.
 */
export interface JetStreamRenderSinkConfig extends Omit<SinkConfigBase, "timeoutMs"> {
  type: "jetstream";
  /** Default `latentwatch.render.<rendering id>.<monitor>` (`renderSubject`). */
  subject: string;
  shape: (typeof RENDERING_SHAPES)[number];
  format: "json" | "ocsf" | "ecs" | "cef";
  /** syslog shape: APP-NAME and facility. */
  appName: string;
  facility: number;
  /** syslog HOSTNAME, CEF `dvchost` (default: the host's name). */
  hostname?: string;
  /** splunk-hec shape: HEC event fields. */
  splunk?: { index?: string; source?: string; sourcetype?: string; host?: string };
}

/** One entry of the monitor's `sinks:` list. */
export type SinkConfig =
  | SyslogSinkConfig
  | WebhookSinkConfig
  | StdoutSinkConfig
  | FileSinkConfig
  | JetStreamRenderSinkConfig;

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

/** Settings of `alerts.spool.fsync` (see `SpoolOptions.fsync` in src/sinks/spool.ts). */
export { EXECUTION_PROVIDERS, type ExecutionProviderSetting };

export const SPOOL_FSYNC = ["never", "batch", "always"] as const;

/** One of {@linkcode SPOOL_FSYNC}. */
export type SpoolFsyncSetting = (typeof SPOOL_FSYNC)[number];

/** Defaults of every optional key. */
export const MONITOR_DEFAULTS = {
  natsUrl: "nats://127.0.0.1:4222",
  alertStream: "LATENTWATCH_ALERTS",
  alertSubjectPrefix: "latentwatch.alerts.",
  maxQueue: 10000,
  spoolFsync: "never",
  maxBatchTokens: 128,
  maxWaitMs: 2,
  maxQueueTokens: 16384,
  sinkMaxQueue: 10000,
  sinkTimeoutMs: 5000,
  steerTtlMs: 5000,
  adaptiveBatching: true,
  provider: "auto",
  evidenceTopLatents: 5,
  evidenceRingTokens: 4096,
} as const;

/** Sink types of the `sinks:` list. */
export const SINK_TYPES = ["syslog", "webhook", "stdout", "file", "jetstream"] as const;

/** Subjects of native alerts (what `alerts tail` and native readers filter on): no rendering goes there. */
export const NATIVE_ALERT_SUBJECTS = "latentwatch.alerts.>";

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

/** `host:port` of a syslog collector (a bracketed IPv6 address allowed). */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const SINK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const jsonFormat = z.enum(["json", "ocsf", "ecs"], {
  error: expectMessage("one of json, ocsf, ecs"),
});
const sinkCommon = {
  name: z.string().regex(SINK_NAME, {
    error: expectMessage("a sink name of letters, digits, '.', '_' or '-'"),
  }).optional(),
  max_queue: int(1, 10_000_000, "alerts queued for this sink before new ones are dropped")
    .default(MONITOR_DEFAULTS.sinkMaxQueue),
  timeout_ms: int(1, 600_000, "milliseconds one delivery attempt may take")
    .default(MONITOR_DEFAULTS.sinkTimeoutMs),
};
const typeOf = <const T extends (typeof SINK_TYPES)[number]>(t: T) =>
  z.literal(t, { error: expectMessage(`type: ${t}`) });

const SyslogSinkSchema = z.strictObject({
  type: typeOf("syslog"),
  ...sinkCommon,
  address: z.string().regex(HOST_PORT, {
    error: expectMessage("host:port of the collector, like 127.0.0.1:6514"),
    abort: true,
  }).refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
    error: expectMessage("a port in 0..65535"),
  }),
  tls: choiceOf([
    z.literal(true),
    z.strictObject({
      ca: nonEmpty.optional(),
      server_name: nonEmpty.optional(),
      cert: nonEmpty.optional(),
      key: nonEmpty.optional(),
    }).check((ctx) => {
      if ((ctx.value.cert === undefined) !== (ctx.value.key === undefined)) {
        const missing = ctx.value.cert === undefined ? "cert" : "key";
        ctx.issues.push({
          code: "custom",
          input: ctx.value,
          path: [],
          message: `expected cert and key together (mutual TLS), found ${missing} missing`,
        });
      }
    }),
  ], {
    expected: "true or {ca, server_name, cert, key}",
    choose: (v) => v === true ? 0 : isMapping(v) ? 1 : -1,
  }).optional(),
  format: z.enum(["json", "cef", "ocsf", "ecs"], {
    error: expectMessage("one of json, cef, ocsf, ecs"),
  }).default("json"),
  app_name: z.string().regex(/^[\x21-\x7e]{1,48}$/, {
    error: expectMessage("an APP-NAME of 1 to 48 printable ASCII characters, no spaces"),
  }).default("latentwatch"),
  hostname: z.string().regex(/^[\x21-\x7e]{1,255}$/, {
    error: expectMessage("a HOSTNAME of 1 to 255 printable ASCII characters, no spaces"),
  }).optional(),
  facility: int(0, 23, "syslog facility; 16 is local0").default(16),
  max_message_bytes: int(256, 16 * 1024 * 1024, "largest syslog message, in bytes")
    .default(65536),
  max_backoff_ms: int(1, 600_000, "longest wait between reconnects").default(5000),
});

const WebhookSinkSchema = z.strictObject({
  type: typeOf("webhook"),
  ...sinkCommon,
  url: z.string().refine((s) => /^https?:\/\/[^\s/]+/.test(s) && URL.canParse(s), {
    error: expectMessage("an http:// or https:// URL"),
  }),
  shape: z.enum(["json", "splunk-hec"], {
    error: expectMessage("one of json, splunk-hec"),
  }).default("json"),
  format: jsonFormat.default("json"),
  headers: z.record(
    z.string().regex(HEADER_NAME, { error: expectMessage("an HTTP header name") }),
    z.string({ error: expectMessage("a header value (a string)") }),
    { error: expectMessage("a mapping of header names to values") },
  ).default({}),
  token_env: z.string().regex(ENV_NAME, {
    error: expectMessage("an environment variable name like SPLUNK_TOKEN"),
  }).optional(),
  index: nonEmpty.optional(),
  source: nonEmpty.optional(),
  sourcetype: nonEmpty.optional(),
  host: nonEmpty.optional(),
  max_attempts: int(1, 100, "POST attempts per alert before it is dropped").default(5),
  max_backoff_ms: int(1, 600_000, "longest wait between attempts").default(10_000),
}).check((ctx) => {
  const w = ctx.value;
  if (w.shape === "splunk-hec" && w.token_env === undefined) {
    ctx.issues.push({
      code: "custom",
      input: w,
      path: ["shape"],
      message: "expected token_env (the variable holding the HEC token) with shape splunk-hec, " +
        "found none",
    });
  }
  if (w.shape !== "splunk-hec") {
    for (const k of ["index", "source", "sourcetype", "host"] as const) {
      if (w[k] !== undefined) {
        ctx.issues.push({
          code: "custom",
          input: w[k],
          path: [k],
          message: `expected ${k} only with shape splunk-hec, found shape ${w.shape}`,
        });
      }
    }
  }
});

const StdoutSinkSchema = z.strictObject({
  type: typeOf("stdout"),
  ...sinkCommon,
  format: jsonFormat.default("json"),
});

const FileSinkSchema = z.strictObject({
  type: typeOf("file"),
  ...sinkCommon,
  path: nonEmpty,
  format: jsonFormat.default("json"),
  fsync: z.enum(["always", "never"], { error: expectMessage("always or never") })
    .default("always"),
  max_bytes: int(0, Number.MAX_SAFE_INTEGER, "bytes before the file is rotated; 0: never")
    .default(100 * 1024 * 1024),
  keep: int(0, 1000, "rotated files kept").default(3),
});

const SYSLOG_ONLY = ["app_name", "facility"] as const;
const HEC_ONLY = ["index", "source", "sourcetype", "host"] as const;

const JetStreamSinkSchema = z.strictObject({
  type: typeOf("jetstream"),
  ...sinkCommon,
  // each publish waits for the NATS publish ack (the bus's ack timeout) and
  // is retried with the same message id; a per-sink limit is not applied, so
  // the key is refused rather than silently ignored
  timeout_ms: z.custom<never>(() => false, {
    error: expectMessage(
      "no timeout_ms on a jetstream sink (each publish waits for the NATS publish ack, " +
        "5000 ms, and is retried)",
    ),
  }).optional(),
  subject: z.string().regex(PUBLISH_SUBJECT, {
    error: expectMessage(
      "a NATS subject without wildcards or spaces, like latentwatch.render.ecs.x",
    ),
    abort: true,
  }).refine((s) => !s.startsWith(MONITOR_DEFAULTS.alertSubjectPrefix), {
    error: expectMessage(
      `a subject outside ${NATIVE_ALERT_SUBJECTS} (native alerts only), like latentwatch.render.ecs.x`,
    ),
  }).optional(),
  shape: z.enum(RENDERING_SHAPES, {
    error: expectMessage(`one of ${RENDERING_SHAPES.join(", ")}`),
  }).default("document"),
  format: z.enum(["json", "ocsf", "ecs", "cef"], {
    error: expectMessage("one of json, ocsf, ecs, cef"),
  }).default("json"),
  app_name: SyslogSinkSchema.shape.app_name.unwrap().optional(),
  hostname: SyslogSinkSchema.shape.hostname,
  facility: int(0, 23, "syslog facility; 16 is local0").optional(),
  index: nonEmpty.optional(),
  source: nonEmpty.optional(),
  sourcetype: nonEmpty.optional(),
  host: nonEmpty.optional(),
}).check((ctx) => {
  const j = ctx.value;
  if (j.shape === "splunk-hec" && j.format === "cef") {
    ctx.issues.push({
      code: "custom",
      input: j.format,
      path: ["format"],
      message: "expected one of json, ocsf, ecs with shape splunk-hec, found cef",
    });
  }
  const misplaced: [readonly string[], string][] = [
    [SYSLOG_ONLY, "syslog"],
    [HEC_ONLY, "splunk-hec"],
  ];
  for (const [keys, shape] of misplaced) {
    if (j.shape === shape) continue;
    for (const k of keys) {
      if (j[k as keyof typeof j] !== undefined) {
        ctx.issues.push({
          code: "custom",
          input: j[k as keyof typeof j],
          path: [k],
          message: `expected ${k} only with shape ${shape}, found shape ${j.shape}`,
        });
      }
    }
  }
});

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
  [
    SyslogSinkSchema,
    WebhookSinkSchema,
    StdoutSinkSchema,
    FileSinkSchema,
    JetStreamSinkSchema,
    UnknownSinkType,
  ],
  {
    expected: `a sink: a mapping with type ${SINK_TYPES.join(", ")}`,
    choose: (v) => {
      if (!isMapping(v)) return -1;
      const i = SINK_TYPES.indexOf(v.type as (typeof SINK_TYPES)[number]);
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
    error: expectMessage("a list of sinks ({type: syslog|webhook|stdout|file|jetstream, ...})"),
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
  // UnknownSinkType never validates, so every entry is one of the five
  cfg.sinks = m.sinks.map((s, i) => sinkConfig(s as SinkEntry, src, i, abs, m.monitor));
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

type SinkEntry = Exclude<z.output<typeof SinkSchema>, z.output<typeof UnknownSinkType>>;

/**
 * The name a sink entry gets: `<type>:<name>` when named, else from its
 * destination (`syslog:<address>`, `webhook:<url host>`, `stdout`,
 * `file:<path>`, `jetstream:<subject>`).
 */
function sinkName(s: Record<string, unknown>, monitor: unknown): string | undefined {
  if (typeof s.type !== "string") return undefined;
  if (typeof s.name === "string") return `${s.type}:${s.name}`;
  switch (s.type) {
    case "syslog":
      return typeof s.address === "string" ? `syslog:${s.address}` : undefined;
    case "webhook":
      return typeof s.url === "string" && URL.canParse(s.url)
        ? `webhook:${new URL(s.url).host}`
        : undefined;
    case "stdout":
      return "stdout";
    case "file":
      return typeof s.path === "string" ? `file:${s.path}` : undefined;
    case "jetstream": {
      const subject = jetstreamSubject(s, monitor);
      return subject !== undefined ? `jetstream:${subject}` : undefined;
    }
  }
  return undefined;
}

/** A `type: jetstream` entry's subject: its own, else the default for its rendering. */
function jetstreamSubject(s: Record<string, unknown>, monitor: unknown): string | undefined {
  if (typeof s.subject === "string") return s.subject;
  const shape = s.shape ?? "document";
  const format = s.format ?? "json";
  if (
    typeof monitor !== "string" || !RENDERING_SHAPES.includes(shape as "document") ||
    typeof format !== "string"
  ) return undefined;
  return renderSubject(
    { shape: shape as "document", format: format as "json" },
    monitor,
  );
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

function sinkConfig(
  s: SinkEntry,
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
    // always set but on jetstream sinks, which refuse the key (and drop it below)
    timeoutMs: s.timeout_ms ?? MONITOR_DEFAULTS.sinkTimeoutMs,
  };
  switch (s.type) {
    case "syslog": {
      const colon = s.address.lastIndexOf(":");
      const tls = s.tls === true ? {} : s.tls;
      return {
        type: "syslog",
        ...common,
        host: s.address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
        port: Number(s.address.slice(colon + 1)),
        ...(tls
          ? {
            tls: {
              ...(tls.ca ? { ca: abs(tls.ca) } : {}),
              ...(tls.server_name ? { serverName: tls.server_name } : {}),
              ...(tls.cert ? { cert: abs(tls.cert) } : {}),
              ...(tls.key ? { key: abs(tls.key) } : {}),
            },
          }
          : {}),
        format: s.format,
        appName: s.app_name,
        ...(s.hostname ? { hostname: s.hostname } : {}),
        facility: s.facility,
        maxMessageBytes: s.max_message_bytes,
        maxBackoffMs: s.max_backoff_ms,
      };
    }
    case "webhook": {
      const splunk = {
        ...(s.index ? { index: s.index } : {}),
        ...(s.source ? { source: s.source } : {}),
        ...(s.sourcetype ? { sourcetype: s.sourcetype } : {}),
        ...(s.host ? { host: s.host } : {}),
      };
      return {
        type: "webhook",
        ...common,
        url: s.url,
        shape: s.shape,
        format: s.format,
        headers: s.headers,
        ...(s.token_env ? { tokenEnv: s.token_env } : {}),
        ...(s.shape === "splunk-hec" ? { splunk } : {}),
        maxAttempts: s.max_attempts,
        maxBackoffMs: s.max_backoff_ms,
      };
    }
    case "stdout":
      return { type: "stdout", ...common, format: s.format };
    case "file":
      return {
        type: "file",
        ...common,
        name: s.name ? common.name : `file:${s.path}`,
        path: abs(s.path),
        format: s.format,
        fsync: s.fsync,
        maxBytes: s.max_bytes,
        keep: s.keep,
      };
    case "jetstream": {
      const { timeoutMs: _unused, ...base } = common; // refused by the schema (no limit applies)
      const splunk = {
        ...(s.index ? { index: s.index } : {}),
        ...(s.source ? { source: s.source } : {}),
        ...(s.sourcetype ? { sourcetype: s.sourcetype } : {}),
        ...(s.host ? { host: s.host } : {}),
      };
      return {
        type: "jetstream",
        ...base,
        subject: jetstreamSubject(s, monitor)!,
        shape: s.shape,
        format: s.format,
        appName: s.app_name ?? "latentwatch",
        facility: s.facility ?? 16,
        ...(s.hostname ? { hostname: s.hostname } : {}),
        ...(s.shape === "splunk-hec" ? { splunk } : {}),
      };
    }
  }
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
