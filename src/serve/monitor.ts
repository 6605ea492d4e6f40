/**
 * Start a monitor from its config: load the SAEs, compile the policies,
 * connect the bus, run the pipeline and the control API. Shared by
 * `latentwatch serve`, the demo, the tests and the bench.
 *
 * Start-up is the list {@linkcode MONITOR_STEPS} (see `./steps.ts`): each
 * named step opens one thing and closes it again; they stop in reverse, on
 * shutdown and when a later step fails, so a failed start leaves no port,
 * connection, spool or session behind.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { tapSubjectFilter } from "../core/frame/subjects.ts";
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import type { Frame } from "../core/frame/format.ts";
import type { Bus } from "../bus/bus.ts";
import { connectNatsBus } from "../bus/nats_bus.ts";
import { natsConfigPasswordProblem } from "../bus/nats_config_password.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { dirname, resolve } from "node:path";
import {
  allEncoders,
  buildGeneration,
  type BuiltGeneration,
  closeUnused,
  compileMonitorPolicies,
  loadMonitorModels,
  loadMonitorSae,
  type MonitorModels,
} from "./components.ts";
import { controlApi, serveControlApi } from "./control_api.ts";
import {
  PolicyCompiler,
  type PolicyCompilerOptions,
  PolicyWorkerError,
} from "./policy_compiler.ts";
import { Logger } from "../shared/log.ts";
import { type Generation, Pipeline } from "./pipeline.ts";
import { encoderProvider } from "../runtime/ort_encoder.ts";
import { TraceWriter } from "../traces/writer.ts";
import { JetStreamSink } from "../sinks/jetstream/sink.ts";
import { SeqCheckpoints } from "./checkpoints.ts";
import type { AlertSink } from "../sinks/sink.ts";
import { createSinks } from "../sinks/factory.ts";
import { AlertFeed } from "./alert_feed.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { startSteps, StartupStepError, type Step } from "./steps.ts";

/** Hooks and overrides for {@linkcode startMonitor}. */
export interface StartOptions {
  /** Use this bus instead of connecting to `config.nats.url` (demo, tests). */
  bus?: Bus;
  log?: Logger;
  onAlert?: (alert: Alert) => void;
  onPublished?: (alert: Alert, seq: number, duplicate: boolean) => void;
  onEncoded?: (frames: readonly Frame[], latents: ReadonlyMap<string, SparseLatents[]>) => void;
  /**
   * Folder of the JetStream sink's on-disk spool (one process per folder);
   * overrides `alerts.spool.dir`, whose default is
   * `.latentwatch/spool/<monitor>` under the working directory.
   */
  spoolDir?: string;
  /** Reload the policies when one of their files changes (serve does). */
  watchPolicies?: boolean;
  /** Override the control API address (`host:port`); `null` disables it. */
  controlListen?: string | null;
  /** The reload compiler's settings (timeout, default 60 s; a stand-in worker in tests). */
  policyCompiler?: PolicyCompilerOptions;
}

/** What a policy reload did. */
export type ReloadResult = { ok: true; rules: number } | { ok: false; error: string };

/** A running monitor. */
export interface RunningMonitor {
  config: MonitorConfig;
  bus: Bus;
  pipeline: Pipeline;
  telemetry: Telemetry;
  saes: ReadonlyMap<string, SaeWeights>;
  /** Address of the control API, when it runs. */
  controlAddr: Deno.NetAddr | null;
  /** Reload the policy files now (what a file change or SIGHUP does). */
  reload(): Promise<ReloadResult>;
  /** Stop (once; later calls return the same result); resolves with the number of alerts that could not be delivered in time. */
  stop(): Promise<number>;
}

/** `latentwatch.encoder.provider`: 1 per live encoder {encoder, provider}; encoders a reload dropped go to 0. */
function setProviderGauge(
  { telemetry, current, old }: { telemetry: Telemetry; current: Generation; old?: Generation },
): void {
  for (const [id, e] of old?.encoders ?? []) {
    const p = encoderProvider(e)?.provider;
    if (p && current.encoders.get(id) !== e) {
      telemetry.set("latentwatch.encoder.provider", 0, { encoder: id, provider: p });
    }
  }
  for (const [id, e] of current.encoders) {
    const p = encoderProvider(e)?.provider;
    if (p) telemetry.set("latentwatch.encoder.provider", 1, { encoder: id, provider: p });
  }
}

/**
 * Forget the JS copy of each SAE's W_enc: onnxruntime holds what the encoders
 * need (1.8 GB saved for a 3584×131072 SAE); a reload that needs another
 * encoder reads the SAE again.
 */
function dropEncoderWeights(saes: Map<string, SaeWeights>): void {
  for (const [id, sae] of saes) saes.set(id, { ...sae, wEnc: new Float32Array(0) });
}

/** Options for {@linkcode watchFiles}. */
interface WatchFilesOptions {
  /** Files whose change calls `onChange`. */
  files: readonly string[];
  onChange: () => unknown;
  log: Logger;
}

/**
 * Call `onChange` (debounced) when any of `files` changes. Editors often
 * replace a file rather than write it, so the folders are watched.
 */
function watchFiles({ files, onChange, log }: WatchFilesOptions): { close(): void } {
  const wanted = new Set(files.map((f) => resolve(f)));
  const watcher = Deno.watchFs([...new Set(files.map((f) => dirname(resolve(f))))]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    for await (const event of watcher) {
      if (!event.paths.some((p) => wanted.has(resolve(p)))) continue;
      clearTimeout(timer);
      timer = setTimeout(() => {
        log.info("policies.changed", { files: event.paths.join(",") });
        onChange();
      }, 200);
    }
  })().catch((err) => log.error("policies.watch_failed", { error: (err as Error).message }));
  return {
    close: () => {
      clearTimeout(timer);
      watcher.close();
    },
  };
}

/** Milliseconds JetStream remembers an alert id for dedup (10 minutes). */
const DUPLICATE_WINDOW_MS = 10 * 60_000;

/**
 * What the start-up steps share: the inputs, then what each step opened
 * (absent until it has), read by later steps and by the stops.
 */
export interface MonitorContext {
  readonly config: MonitorConfig;
  readonly opts: StartOptions;
  readonly log: Logger;
  readonly telemetry: Telemetry;
  /** The tap subject filter the pipeline subscribes to. */
  readonly subject: string;
  /** Folder of the JetStream sink's spool and of the request checkpoints. */
  readonly spoolDir: string;
  models?: MonitorModels;
  /** The live generation (encoders, policies); replaced by each reload. */
  built?: BuiltGeneration;
  /** Raised alerts, live, for the control API's Server-Sent Events stream. */
  feed?: AlertFeed;
  server?: Deno.HttpServer<Deno.NetAddr>;
  /** The bus: `opts.bus`, or the connection the `nats` step opened. */
  bus: Bus | null;
  jetstream?: JetStreamSink;
  checkpoints?: SeqCheckpoints;
  /** The configured sinks besides JetStream. */
  extraSinks?: AlertSink[];
  /** True once the pipeline's stop has closed every sink. */
  sinksClosed: boolean;
  recorder?: TraceWriter;
  pipeline: Pipeline | null;
  compiler?: PolicyCompiler;
  reloading: Promise<ReloadResult>;
  watcher?: { close(): void };
  /** Alerts the pipeline's stop could not deliver in time. */
  undelivered: number;
}

/** Options for {@linkcode buildFor}. */
interface BuildOptions {
  policies: Awaited<ReturnType<typeof compileMonitorPolicies>>;
  /** The running generation, whose encoders a reload reuses. */
  previous?: BuiltGeneration;
  /** Read an SAE again (its W_enc was dropped after the first build). */
  reloadSae?: (id: string) => Promise<SaeWeights>;
}

/** Build a generation of encoders for `ctx`'s models and config. */
function buildFor(ctx: MonitorContext, o: BuildOptions): Promise<BuiltGeneration> {
  return buildGeneration({
    models: ctx.models!,
    policies: o.policies,
    log: ctx.log,
    ...(o.previous ? { previous: o.previous } : {}),
    ...(o.reloadSae ? { reloadSae: o.reloadSae } : {}),
    execution: ctx.config.execution,
    evidence: ctx.config.evidence,
  });
}

/** Why the sidecar cannot do its work now (empty when ready). */
function notReady(ctx: MonitorContext): string[] {
  const { bus, pipeline } = ctx;
  const why: string[] = [];
  if (!bus) return ["connecting to NATS"];
  if (!bus.connected) why.push("NATS disconnected");
  else if (bus.health && !bus.health.delivering) {
    why.push(`NATS not delivering (${bus.health.lastError?.message ?? "probe failed"})`);
  }
  if (pipeline === null) why.push("pipeline not started");
  else {
    if (!pipeline.subscribed) why.push(`subscription to '${ctx.subject}' closed, re-subscribing`);
    if (!pipeline.processing) {
      why.push(`processing loop ended (${pipeline.processingError?.message ?? "stopped"})`);
    }
  }
  return why;
}

/**
 * Hot reload: validate and compile the new rules, build any encoder they
 * need, then swap everything at once between batches. A bad change is
 * refused with its error and the running set carries on. Reloads queue up.
 */
function reload(ctx: MonitorContext): Promise<ReloadResult> {
  const { config, log, telemetry } = ctx;
  return ctx.reloading = ctx.reloading.then(async () => {
    try {
      // read and compiled in a worker: the control API and frame intake
      // keep their latency while a large set compiles
      const policies = await compileMonitorPolicies(config, ctx.models!, undefined, ctx.compiler);
      const next = await buildFor(ctx, {
        policies,
        previous: ctx.built,
        reloadSae: (id) => loadMonitorSae(config.saes.find((s) => s.id === id)!, log),
      });
      const old = await ctx.pipeline!.swap(next.generation);
      ctx.built = next;
      await closeUnused(old, next.generation);
      setProviderGauge({ telemetry, current: next.generation, old });
      telemetry.add("latentwatch.policy.reloads", 1, { result: "ok" });
      log.info("policies.reloaded", { rules: policies.rules.length });
      return { ok: true, rules: policies.rules.length };
    } catch (err) {
      telemetry.add("latentwatch.policy.reloads", 1, { result: "refused" });
      log.error("policies.reload_refused", {
        reason: err instanceof PolicyWorkerError ? `worker_${err.kind}` : "invalid",
        error: (err as Error).message,
        note: "the running rules stay in force",
      });
      return { ok: false, error: (err as Error).message };
    }
  });
}

/**
 * The start-up of a monitor, in order. Each stop undoes its start and copes
 * with a start that did not finish; they run in reverse on shutdown and when
 * a later step fails (every one, even when another throws).
 */
export const MONITOR_STEPS: readonly Step<MonitorContext>[] = [
  {
    // read the SAEs, compile the policies, build the encoders
    name: "models",
    start: async (ctx) => {
      const { config, log, telemetry } = ctx;
      ctx.models = await loadMonitorModels(config, log);
      ctx.built = await buildFor(ctx, {
        policies: await compileMonitorPolicies(config, ctx.models),
      });
      setProviderGauge({ telemetry, current: ctx.built.generation });
      log.info("policies.loaded", {
        files: config.policies.length,
        rules: ctx.built.generation.policies.rules.length,
      });
      dropEncoderWeights(ctx.models.saes);
    },
    stop: async (ctx) => {
      const generation = ctx.pipeline?.generation ?? ctx.built?.generation;
      for (const e of generation ? allEncoders(generation) : []) await e.close();
    },
  },
  {
    // before NATS, so liveness holds (and readiness says why not) while the
    // broker is still unreachable
    name: "control-api",
    start: (ctx) => {
      const { config, opts, log } = ctx;
      const feed = ctx.feed = new AlertFeed({
        ...(config.control?.maxStreamsPerClient !== undefined
          ? { maxPerClient: config.control.maxStreamsPerClient }
          : {}),
      });
      const listen = opts.controlListen === undefined ? config.control?.listen : opts.controlListen;
      if (!listen) return;
      const saes = ctx.models!.saes;
      const app = controlApi({
        telemetry: ctx.telemetry,
        alerts: feed,
        ready: () => notReady(ctx).length === 0,
        notReadyReasons: () => notReady(ctx),
        info: () => {
          const { bus, pipeline } = ctx;
          return {
            monitor: config.monitor,
            model: config.model,
            hook: config.hook,
            subject: ctx.subject,
            nats: {
              url: config.nats.url,
              connected: bus?.connected ?? false,
              delivering: bus ? (bus.health?.delivering ?? bus.connected) : false,
              subscribed: pipeline?.subscribed ?? false,
              ...(bus?.health?.lastError ? { last_error: bus.health.lastError } : {}),
            },
            provider: "cpu",
            saes: [...saes].map(([id, s]) => ({
              id,
              architecture: s.architecture,
              d_in: s.dIn,
              d_sae: s.dSae,
            })),
            rules: pipeline?.generation.policies.rules.length ?? 0,
            active_requests: pipeline?.activeRequests ?? 0,
            sinks: Object.fromEntries((pipeline?.sinks ?? []).map((s) => [s.name, s.stats])),
            live_alerts: feed.stats,
          };
        },
      });
      ctx.server = serveControlApi(app, listen);
      log.info("control.listening", {
        addr: `${ctx.server.addr.hostname}:${ctx.server.addr.port}`,
      });
    },
    stop: async (ctx) => {
      // live SSE streams end first: the server's shutdown waits for open responses
      ctx.feed?.close();
      await ctx.server?.shutdown();
    },
  },
  {
    // connect to config.nats.url, unless the caller passed a bus
    name: "nats",
    start: async (ctx) => {
      if (ctx.bus) return;
      const { config, log, telemetry } = ctx;
      log.info("nats.connecting", {
        url: config.nats.url,
        note: "waits until the server answers",
      });
      const pass = config.nats.passwordEnv ? Deno.env.get(config.nats.passwordEnv) : undefined;
      if (config.nats.passwordEnv && pass === undefined) {
        throw new TypeError(
          `${config.file}: nats.password_env: expected environment variable ${config.nats.passwordEnv} to hold the NATS password, found it unset`,
        );
      }
      const passProblem = pass !== undefined ? natsConfigPasswordProblem(pass) : undefined;
      if (passProblem) {
        // the sidecar sends it as is; the warning is for the server's side, where
        // deploy/nats/accounts.conf takes the same variable through `$NAME`
        log.warn("nats.password_unsafe_for_server_config", {
          env: config.nats.passwordEnv,
          reason: passProblem,
          hint: "use a letter, then letters, digits, _ or - (e.g. lw + `openssl rand -hex 24`)",
        });
      }
      ctx.bus = await connectNatsBus({
        url: config.nats.url,
        ...(config.nats.user !== undefined ? { user: config.nats.user } : {}),
        ...(pass !== undefined ? { pass } : {}),
        name: `latentwatch:${config.monitor}`,
        onStatus: (s) => {
          if (s.type === "error") telemetry.add("latentwatch.bus.errors", 1, { type: s.type });
          log.warn(`nats.${s.type}`, { url: config.nats.url, detail: s.detail });
        },
      });
      log.info("nats.connected", { url: config.nats.url });
    },
    // a bus the caller passed stays open
    stop: async (ctx) => {
      if (!ctx.opts.bus) await ctx.bus?.close();
    },
  },
  {
    // JetStream is always a sink; while NATS is unreachable its alerts go to the
    // on-disk spool and are delivered after reconnect, also across a restart
    name: "alert-stream",
    start: async (ctx) => {
      const { config } = ctx;
      ctx.jetstream = new JetStreamSink(ctx.bus!, {
        subject: config.alerts.subject,
        stream: {
          name: config.alerts.stream,
          subjects: [config.alerts.subject],
          duplicateWindowMs: DUPLICATE_WINDOW_MS,
        },
        maxQueue: config.alerts.maxQueue,
        spoolDir: ctx.spoolDir,
        spool: { fsync: config.alerts.spool?.fsync ?? "never" },
        log: ctx.log,
        telemetry: ctx.telemetry,
        onPublished: ctx.opts.onPublished,
      });
      await ctx.jetstream.start();
    },
    // once the pipeline has started, its stop drains and closes the sinks
    stop: async (ctx) => {
      if (!ctx.sinksClosed) await ctx.jetstream?.close();
    },
  },
  {
    // beside the spool (whose lock makes the folder this process's): where
    // each request's processing stood, so a restart counts what it missed
    name: "checkpoints",
    start: (ctx) => {
      const { log } = ctx;
      const checkpoints = ctx.checkpoints = SeqCheckpoints.open(
        `${ctx.spoolDir}/requests.ckpt`,
        { maxRequests: 100_000 },
      );
      if (checkpoints.damaged > 0) {
        log.warn("checkpoint.damaged", { path: checkpoints.path, records: checkpoints.damaged });
      }
      if (checkpoints.pending > 0) {
        log.info("checkpoint.loaded", {
          path: checkpoints.path,
          requests: checkpoints.pending,
          note: "frames of these requests missed while down are counted as lost",
        });
      }
    },
    stop: (ctx) => ctx.checkpoints?.close(),
  },
  {
    // the configured sinks (syslog, webhooks, stdout, files): each bounded and
    // independent, so a dead collector slows nothing else
    name: "sinks",
    start: async (ctx) => {
      const { telemetry } = ctx;
      const extra = ctx.extraSinks = createSinks(ctx.config.sinks, {
        log: ctx.log,
        // `type: jetstream` sinks: renderings on their own subjects of the alert stream
        jetstream: {
          bus: ctx.bus!,
          stream: ctx.config.alerts.stream,
          duplicateWindowMs: DUPLICATE_WINDOW_MS,
          spoolDir: ctx.spoolDir,
          spool: { fsync: ctx.config.alerts.spool?.fsync ?? "never" },
          // drops, publishes and queue depth, labelled with each sink's name
          telemetry,
        },
        onDrop: (sink, _alert, reason) =>
          telemetry.add("latentwatch.alerts.dropped", 1, { reason, sink }),
      });
      await Promise.all(extra.map((sink) => sink.start()));
    },
    stop: async (ctx) => {
      if (!ctx.sinksClosed) await Promise.all((ctx.extraSinks ?? []).map((s) => s.close()));
    },
  },
  {
    // `record:` in the config: what comes in, written to a trace file
    name: "recorder",
    start: async (ctx) => {
      const { config, log, telemetry } = ctx;
      const record = config.record;
      if (!record) return;
      ctx.recorder = await TraceWriter.create(record.path, {
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        sampling: {
          ...(record.every !== undefined ? { every: record.every } : {}),
          ...(record.requests !== undefined ? { requests: record.requests } : {}),
        },
      }, {
        onDrop: (reason, total) => {
          telemetry.add("latentwatch.trace.dropped", 1, { reason });
          log.error("trace.dropped", { path: record.path, reason, total });
        },
      });
      log.info("trace.recording", { path: ctx.recorder.path });
    },
    stop: async (ctx) => {
      await ctx.recorder?.close();
    },
  },
  {
    // subscribe to the tap and run the batch loop
    name: "pipeline",
    start: async (ctx) => {
      const { config, opts, recorder, feed } = ctx;
      const bus = ctx.bus!;
      const pipeline = ctx.pipeline = new Pipeline({
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        subject: ctx.subject,
        dIn: ctx.models!.dIn,
        ...ctx.built!.generation,
        batching: config.batching,
        steering: config.steering,
        evidence: config.evidence,
        sinks: [ctx.jetstream!, ...ctx.extraSinks!],
        durable: ctx.jetstream!,
        checkpoints: ctx.checkpoints!,
        bus,
        telemetry: ctx.telemetry,
        log: ctx.log,
        onMessage: recorder ? (msg) => recorder.write(msg) : undefined,
        onAlert: (alert) => {
          feed!.publish(alert);
          opts.onAlert?.(alert);
        },
        onEncoded: opts.onEncoded,
      });
      pipeline.start();
      // the subscription is live on the server once this round trip returns, so a
      // caller that publishes right after start-up loses nothing
      await bus.flush();
      ctx.log.info("monitor.started", {
        monitor: config.monitor,
        subject: ctx.subject,
        alerts: config.alerts.subject,
      });
    },
    // stop taking frames, finish the queue, drain and close every sink
    stop: async (ctx) => {
      if (!ctx.pipeline) return;
      ctx.undelivered = await ctx.pipeline.stop();
      ctx.sinksClosed = true;
    },
  },
  {
    // the policy compiler worker, and the file watcher when asked for
    name: "policy-reload",
    start: (ctx) => {
      ctx.compiler = new PolicyCompiler(ctx.opts.policyCompiler);
      if (ctx.opts.watchPolicies) {
        ctx.watcher = watchFiles({
          files: ctx.config.policies,
          onChange: () => reload(ctx),
          log: ctx.log,
        });
      }
    },
    stop: async (ctx) => {
      ctx.watcher?.close();
      // closed first: a compile in flight rejects now instead of holding the stop
      ctx.compiler?.close();
      await ctx.reloading;
    },
  },
];

/**
 * Load everything a monitor needs and start it, step by step
 * ({@linkcode MONITOR_STEPS}). Throws with a clear message (file, field,
 * expected, found) when something in the config is wrong, after undoing the
 * steps that had started; the log names the step (`startup.step_failed`).
 *
 * @example
 * ```ts
 * import { loadMonitorConfig } from "../config/monitor.ts";
 *
 * const m = await startMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * // ... later
 * await m.stop();
 * ```
 */
export async function startMonitor(
  config: MonitorConfig,
  opts: StartOptions = {},
): Promise<RunningMonitor> {
  const log = opts.log ?? new Logger();
  const ctx: MonitorContext = {
    config,
    opts,
    log,
    telemetry: new Telemetry(),
    subject: config.nats.subject ?? tapSubjectFilter(config.model, config.hook),
    spoolDir: opts.spoolDir ?? config.alerts.spool?.dir ?? `.latentwatch/spool/${config.monitor}`,
    bus: opts.bus ?? null,
    sinksClosed: false,
    pipeline: null,
    reloading: Promise.resolve({ ok: true, rules: 0 }),
    undelivered: 0,
  };
  let started;
  try {
    started = await startSteps(MONITOR_STEPS, ctx, { log });
  } catch (err) {
    // the caller sees the step's own error (its message is the user's start-up error)
    throw err instanceof StartupStepError ? err.cause : err;
  }
  let stopping: Promise<number> | null = null;
  return {
    config,
    bus: ctx.bus!,
    pipeline: ctx.pipeline!,
    telemetry: ctx.telemetry,
    saes: ctx.models!.saes,
    controlAddr: ctx.server?.addr ?? null,
    reload: () => reload(ctx),
    stop: () =>
      stopping ??= (async () => {
        // failed stops are logged with their step's name; the others still ran
        await started.stop();
        log.flush();
        return ctx.undelivered;
      })(),
  };
}
