/**
 * The zod schema of a monitor file (YAML keys as written) and its defaults;
 * the `sinks:` list comes from `./monitor_sinks.ts`. Loading, and the
 * `MonitorConfig` it produces: `./monitor.ts`.
 *
 * @module
 */
import { z } from "zod";
import { EXECUTION_PROVIDERS } from "../runtime/provider.ts";
import { FULL_ENCODE_PATHS } from "../runtime/ort_encoder.ts";
import { NATIVE_KERNELS_SETTINGS } from "../runtime/native_library.ts";
import { SAE_FORMATS } from "../core/sae.ts";
import { REDACT_MODES } from "../core/redact.ts";
import { SINK_DEFAULTS } from "../sinks/kind.ts";
import { NATIVE_ALERT_SUBJECT_PREFIX, PUBLISH_SUBJECT } from "../sinks/jetstream/mod.ts";
import { SINK_TYPES } from "../sinks/registry.ts";
import { describeValue, expectMessage, int, nonEmpty } from "../shared/schema.ts";
import { SinkSchema } from "./monitor_sinks.ts";
import { ScaleOutSchema } from "./monitor_scale_out.ts";

/** Settings of `alerts.spool.fsync` (see `SpoolOptions.fsync` in src/sinks/spool_options.ts). */
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
/** One server of a list: a URL, or `host:port` as the NATS clients take it after the first. */
const NATS_SERVER = /^((nats|tls|ws|wss):\/\/)?[^\s/:]+:\d{1,5}$/;
/** Subject filter a monitor subscribes to: wildcards `*` as a token and `>` as the last one. */
const FILTER_SUBJECT = /^([^\s.*>]+|\*)(\.([^\s.*>]+|\*))*(\.>)?$|^>$/;
const STREAM = /^[A-Za-z0-9_-]+$/;
/** Whether `host` (of a `host:port` listen address) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

const redactMode = z.enum(REDACT_MODES, { error: expectMessage("one of none, hash, tokens") });

const LISTEN = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

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
    // one server, several separated by commas, or a list: the client fails over between them
    url: z.union([z.string(), z.array(z.string()).min(1)], {
      error: expectMessage("a NATS URL like nats://host:port, or a list of them"),
    }).transform((v, ctx) => {
      const urls = (Array.isArray(v) ? v : v.split(",")).map((u) => u.trim());
      for (const [i, u] of urls.entries()) {
        if (!(NATS_URL.test(u) || (i > 0 && NATS_SERVER.test(u)))) {
          ctx.issues.push({
            code: "custom",
            input: v,
            message: `expected a NATS URL like nats://host:port (or a list of them), found ${
              describeValue(u)
            }`,
          });
          return z.NEVER;
        }
      }
      return urls.join(",");
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
    replicas: int(
      1,
      5,
      "copies of the alert stream in a NATS cluster (1 to 5; 3 on a 3-node cluster)",
    )
      .default(1),
    spool: z.strictObject({
      dir: nonEmpty.optional(),
      fsync: z.enum(SPOOL_FSYNC, { error: expectMessage("never, batch or always") })
        .default(MONITOR_DEFAULTS.spoolFsync),
    }).default({ fsync: MONITOR_DEFAULTS.spoolFsync }),
  }).default({
    stream: MONITOR_DEFAULTS.alertStream,
    max_queue: MONITOR_DEFAULTS.maxQueue,
    replicas: 1,
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
    full_encode: z.enum(FULL_ENCODE_PATHS, {
      error: expectMessage(`one of ${FULL_ENCODE_PATHS.join(", ")}`),
    }).default("auto"),
    native_kernels: z.enum(NATIVE_KERNELS_SETTINGS, {
      error: expectMessage(`one of ${NATIVE_KERNELS_SETTINGS.join(", ")}`),
    }).default("auto"),
  }).default({
    provider: MONITOR_DEFAULTS.provider,
    spin: false,
    full_encode: "auto",
    native_kernels: "auto",
  }),
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
  state_dir: nonEmpty.optional(),
  record: z.strictObject({
    path: nonEmpty,
    every: z.int({ error: expectMessage("an integer ≥ 1 (keep one request in N)") }).min(1, {
      error: expectMessage("an integer ≥ 1 (keep one request in N)"),
    }).optional(),
    requests: z.number({ error: expectMessage("a fraction of requests in (0, 1]") }).gt(0, {
      error: expectMessage("a fraction of requests in (0, 1]"),
    }).max(1, { error: expectMessage("a fraction of requests in (0, 1]") }).optional(),
    redact: redactMode.optional(),
  }).optional(),
  redaction: z.strictObject({
    default: redactMode.default("none"),
    hash_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
      error: expectMessage("the name of an environment variable holding the hash key"),
    }).optional(),
  }).default({ default: "none" }),
  sinks: z.array(SinkSchema, {
    error: expectMessage(`a list of sinks ({type: ${SINK_TYPES.join("|")}, ...})`),
  }).default([]),
  scale_out: ScaleOutSchema.optional(),
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
    token_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
      error: expectMessage("the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*)"),
    }).optional(),
  }).superRefine((c, ctx) => {
    const host = c.listen.slice(0, c.listen.lastIndexOf(":"));
    if (c.token_env === undefined && !isLoopbackHost(host)) {
      ctx.addIssue({
        code: "custom",
        path: ["listen"],
        message: `expected control.token_env (a bearer token for /ui/ and state-changing ` +
          `endpoints) with a non-loopback address, found '${host}' without it`,
      });
    }
  }).optional(),
});
