/**
 * Monitor config: one YAML file per monitored model, naming the SAEs to run,
 * the policy files to enforce, where frames come from and alerts go (NATS),
 * and the micro-batching limits. Keys are snake_case in YAML and camelCase in
 * {@linkcode MonitorConfig}; relative paths are resolved against the
 * directory of the monitor file. Documented in `docs/monitor-config.md`.
 *
 * @module
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { EXECUTION_PROVIDERS, type ExecutionProviderSetting } from "../runtime/provider.ts";
import type { FullEncodePath } from "../runtime/ort_encoder.ts";
import type { NativeKernelsSetting } from "../runtime/native_library.ts";
import { SAE_FORMATS, type SaeFormatName } from "../core/sae.ts";
import type { RedactMode } from "../core/redact.ts";
import { NATIVE_ALERT_SUBJECTS } from "../sinks/jetstream/mod.ts";
import { SINK_TYPES, type SinkConfig } from "../sinks/registry.ts";
import {
  duplicateIds,
  loadYamlSource,
  parseYamlSource,
  validateYaml,
  type YamlSource,
} from "./yaml_source.ts";
import { MONITOR_DEFAULTS, MonitorFileSchema, type SpoolFsyncSetting } from "./monitor_schema.ts";
import { duplicateSinkNames, sinkConfig } from "./monitor_sinks.ts";
import { type ScaleOutConfig, scaleOutConfig } from "./monitor_scale_out.ts";

export {
  MONITOR_DEFAULTS,
  MonitorFileSchema,
  SPOOL_FSYNC,
  type SpoolFsyncSetting,
} from "./monitor_schema.ts";

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
    /** Copies of the alert stream kept in a NATS cluster when the sidecar creates it. */
    replicas: number;
    /**
     * The JetStream sink's on-disk spool, where every alert is written ahead
     * before any sink sees it (docs/alert-delivery.md): its folder (absolute;
     * absent: `spool/<monitor>` under the state directory) and
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
  execution: {
    provider: ExecutionProviderSetting;
    threads?: number;
    spin: boolean;
    /** How full encodes run on the CPU (`auto`: int8 candidates, exact; see `ort_encoder.ts`). */
    fullEncode: FullEncodePath;
    /** The int8 candidates' native CPU kernels: `auto`, `require` or `off` (`candidate_encoder.ts`). */
    nativeKernels: NativeKernelsSetting;
  };
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
  control?: {
    listen: string;
    maxStreamsPerClient?: number;
    /** Environment variable holding the bearer token of `/ui/` (required off loopback). */
    tokenEnv?: string;
  };
  /**
   * Several sidecars sharing the frames by partition (docs/scale-out.md);
   * absent: this sidecar takes every partition.
   */
  scaleOut?: ScaleOutConfig;
  /**
   * The state directory (`state_dir`, absolute): spool, checkpoints,
   * relative recordings. Absent: `--state-dir` or the environment decides
   * (src/serve/state_dir.ts).
   */
  stateDir?: string;
  /**
   * Record received frames to a trace file (all, or a sample of requests);
   * a relative `path` is under the state directory (placed at start-up).
   */
  record?: {
    path: string /* absolute, or relative to the state directory */;
    every?: number;
    requests?: number;
    /** Redaction of the token text recorded (`record.redact`; default `redaction.default`). */
    redact: RedactMode;
  };
  /**
   * Redaction of token text (`redaction:`, docs/monitor-config.md): the
   * monitor-wide floor of every alert (stream, spool, control API, live
   * view; rules and sinks may be stricter), and the environment variable
   * holding the key of `hash` mode (HMAC-SHA-256; absent: plain SHA-256).
   */
  redaction: { default: RedactMode; hashKeyEnv?: string };
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

export { EXECUTION_PROVIDERS, type ExecutionProviderSetting };

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
      replicas: m.alerts.replicas,
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
      fullEncode: m.execution.full_encode,
      nativeKernels: m.execution.native_kernels,
      ...(m.execution.threads !== undefined ? { threads: m.execution.threads } : {}),
    },
    evidence: { topLatents: m.evidence.top_latents, ringTokens: m.evidence.ring_tokens },
    steering: { enabled: m.steering.enabled, ttlMs: m.steering.ttl_ms },
    redaction: {
      default: m.redaction.default,
      ...(m.redaction.hash_key_env !== undefined ? { hashKeyEnv: m.redaction.hash_key_env } : {}),
    },
    sinks: [],
  };
  // UnknownSinkType never validates, so every entry is of a registered kind
  cfg.sinks = m.sinks.map((s, i) =>
    sinkConfig(s as Parameters<typeof sinkConfig>[0], src, i, abs, m.monitor)
  );
  if (m.nats.subject !== undefined) cfg.nats.subject = m.nats.subject;
  if (m.scale_out) cfg.scaleOut = scaleOutConfig(m.scale_out);
  if (m.control) {
    cfg.control = {
      listen: m.control.listen,
      ...(m.control.max_streams_per_client !== undefined
        ? { maxStreamsPerClient: m.control.max_streams_per_client }
        : {}),
      ...(m.control.token_env !== undefined ? { tokenEnv: m.control.token_env } : {}),
    };
  }
  if (m.state_dir !== undefined) cfg.stateDir = abs(m.state_dir);
  if (m.record) {
    cfg.record = {
      // relative: under the state directory, which only start-up knows
      path: isAbsolute(m.record.path) ? resolve(m.record.path) : m.record.path,
      ...(m.record.every !== undefined ? { every: m.record.every } : {}),
      ...(m.record.requests !== undefined ? { requests: m.record.requests } : {}),
      redact: m.record.redact ?? m.redaction.default,
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
