/**
 * Start a monitor from its config: load the SAEs, compile the policies,
 * connect the bus, run the pipeline and the control API. Shared by
 * `latentwatch serve`, the demo, the tests and the bench.
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
  closeUnused,
  compileMonitorPolicies,
  loadMonitorModels,
  loadMonitorSae,
} from "./components.ts";
import { controlApi, serveControlApi } from "./control_api.ts";
import { PolicyCompiler } from "./policy_compiler.ts";
import { Logger } from "../shared/log.ts";
import { type Generation, Pipeline } from "./pipeline.ts";
import { encoderProvider } from "../runtime/ort_encoder.ts";
import { TraceWriter } from "../traces/writer.ts";
import { JetStreamSink } from "../sinks/jetstream.ts";
import { SeqCheckpoints } from "./checkpoints.ts";
import type { AlertSink } from "../sinks/sink.ts";
import { createSinks } from "../sinks/factory.ts";
import { AlertFeed } from "./alert_feed.ts";
import { Telemetry } from "../shared/telemetry.ts";

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
function setProviderGauge(telemetry: Telemetry, current: Generation, old?: Generation): void {
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

/**
 * Call `onChange` (debounced) when any of `files` changes. Editors often
 * replace a file rather than write it, so the folders are watched.
 */
function watchFiles(files: string[], onChange: () => unknown, log: Logger): { close(): void } {
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
 * Load everything a monitor needs and start it. Throws with a clear message
 * (file, field, expected, found) when something in the config is wrong.
 *
 * @example
 * ```ts
 * const m = await startMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * // ... later
 * await m.stop();
 * ```
 */
export async function startMonitor(
  config: MonitorConfig,
  opts: StartOptions = {},
): Promise<RunningMonitor> {
  // what start-up opened so far, undone in reverse if a later step fails, so
  // a failed start leaves no port, connection, spool or session behind
  const undo: (() => unknown)[] = [];
  try {
    return await start(config, opts, undo);
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch { /* best effort: the start-up error is what matters */ }
    }
    throw err;
  }
}

async function start(
  config: MonitorConfig,
  opts: StartOptions,
  undo: (() => unknown)[],
): Promise<RunningMonitor> {
  const log = opts.log ?? new Logger();
  const telemetry = new Telemetry();

  const models = await loadMonitorModels(config, log);
  const { saes, dIn } = models;
  let built = await buildGeneration({
    models,
    policies: await compileMonitorPolicies(config, models),
    log,
    execution: config.execution,
    evidence: config.evidence,
  });
  setProviderGauge(telemetry, built.generation);
  log.info("policies.loaded", {
    files: config.policies.length,
    rules: built.generation.policies.rules.length,
  });
  dropEncoderWeights(saes);
  undo.push(async () => {
    for (const e of allEncoders(built.generation)) await e.close();
  });

  const subject = config.nats.subject ?? tapSubjectFilter(config.model, config.hook);
  // The control API comes up before NATS so liveness holds (and readiness says
  // why not) while the broker is still unreachable.
  let bus: Bus | null = opts.bus ?? null;
  // raised alerts, live, for the control API's Server-Sent Events stream
  const feed = new AlertFeed({
    ...(config.control?.maxStreamsPerClient !== undefined
      ? { maxPerClient: config.control.maxStreamsPerClient }
      : {}),
  });
  let pipeline: Pipeline | null = null;
  /** Why the sidecar cannot do its work now (empty when ready). */
  const notReady = (): string[] => {
    const why: string[] = [];
    if (!bus) return ["connecting to NATS"];
    if (!bus.connected) why.push("NATS disconnected");
    else if (bus.health && !bus.health.delivering) {
      why.push(`NATS not delivering (${bus.health.lastError?.message ?? "probe failed"})`);
    }
    if (pipeline === null) why.push("pipeline not started");
    else {
      if (!pipeline.subscribed) why.push(`subscription to '${subject}' closed, re-subscribing`);
      if (!pipeline.processing) {
        why.push(
          `processing loop ended (${pipeline.processingError?.message ?? "stopped"})`,
        );
      }
    }
    return why;
  };
  const listen = opts.controlListen === undefined ? config.control?.listen : opts.controlListen;
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  if (listen) {
    const app = controlApi({
      telemetry,
      alerts: feed,
      ready: () => notReady().length === 0,
      notReadyReasons: notReady,
      info: () => ({
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        subject,
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
      }),
    });
    server = serveControlApi(app, listen);
    const opened = server;
    undo.push(() => {
      feed.close();
      return opened.shutdown();
    });
    log.info("control.listening", { addr: `${server.addr.hostname}:${server.addr.port}` });
  }

  if (!bus) {
    log.info("nats.connecting", { url: config.nats.url, note: "waits until the server answers" });
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
    bus = await connectNatsBus({
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
    const owned = bus;
    undo.push(() => owned.close());
  }
  const connected = bus;
  const streamSpec = {
    name: config.alerts.stream,
    subjects: [config.alerts.subject],
    duplicateWindowMs: DUPLICATE_WINDOW_MS,
  };
  // JetStream is always a sink; while NATS is unreachable its alerts go to the
  // on-disk spool and are delivered after reconnect, also across a restart
  const spoolDir = opts.spoolDir ?? config.alerts.spool?.dir ??
    `.latentwatch/spool/${config.monitor}`;
  const jetstream = new JetStreamSink(connected, {
    subject: config.alerts.subject,
    stream: streamSpec,
    maxQueue: config.alerts.maxQueue,
    spoolDir,
    spool: { fsync: config.alerts.spool?.fsync ?? "never" },
    log,
    telemetry,
    onPublished: opts.onPublished,
  });
  undo.push(() => jetstream.close());
  await jetstream.start();
  // beside the spool (whose lock makes the folder this process's): where
  // each request's processing stood, so a restart counts what it missed
  const checkpoints = SeqCheckpoints.open(`${spoolDir}/requests.ckpt`, {
    maxRequests: 100_000,
  });
  undo.push(() => checkpoints.close());
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
  // the configured sinks (syslog, webhooks, stdout, files): each bounded and
  // independent, so a dead collector slows nothing else
  const extra = createSinks(config.sinks, {
    log,
    // `type: jetstream` sinks: renderings on their own subjects of the alert stream
    jetstream: {
      bus: connected,
      stream: config.alerts.stream,
      duplicateWindowMs: DUPLICATE_WINDOW_MS,
      spoolDir,
      // drops, publishes and queue depth, labelled with each sink's name
      telemetry,
    },
    onDrop: (sink, _alert, reason) =>
      telemetry.add("latentwatch.alerts.dropped", 1, { reason, sink }),
  });
  undo.push(() => Promise.all(extra.map((sink) => sink.close())));
  await Promise.all(extra.map((sink) => sink.start()));
  const sinks: AlertSink[] = [jetstream, ...extra];

  const recorder = config.record
    ? await TraceWriter.create(config.record.path, {
      monitor: config.monitor,
      model: config.model,
      hook: config.hook,
      sampling: {
        ...(config.record.every !== undefined ? { every: config.record.every } : {}),
        ...(config.record.requests !== undefined ? { requests: config.record.requests } : {}),
      },
    }, {
      onDrop: (reason, total) => {
        telemetry.add("latentwatch.trace.dropped", 1, { reason });
        log.error("trace.dropped", { path: config.record!.path, reason, total });
      },
    })
    : null;
  if (recorder) {
    log.info("trace.recording", { path: recorder.path });
    undo.push(() => recorder.close());
  }

  pipeline = new Pipeline({
    monitor: config.monitor,
    model: config.model,
    hook: config.hook,
    subject,
    dIn,
    ...built.generation,
    batching: config.batching,
    steering: config.steering,
    evidence: config.evidence,
    sinks,
    durable: jetstream,
    checkpoints,
    bus: connected,
    telemetry,
    log,
    onMessage: recorder ? (msg) => recorder.write(msg) : undefined,
    onAlert: (alert) => {
      feed.publish(alert);
      opts.onAlert?.(alert);
    },
    onEncoded: opts.onEncoded,
  });
  pipeline.start();
  // the subscription is live on the server once this round trip returns, so a
  // caller that publishes right after start-up loses nothing
  await connected.flush();
  log.info("monitor.started", { monitor: config.monitor, subject, alerts: config.alerts.subject });
  const running = pipeline;

  // Hot reload: validate and compile the new rules, build any encoder they
  // need, then swap everything at once between batches. A bad change is
  // refused with its error and the running set carries on. Reloads queue up.
  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, rules: 0 });
  const compiler = new PolicyCompiler();
  undo.push(() => compiler.close());
  const reload = (): Promise<ReloadResult> =>
    reloading = reloading.then(async () => {
      try {
        // read and compiled in a worker: the control API and frame intake
        // keep their latency while a large set compiles
        const policies = await compileMonitorPolicies(config, models, undefined, compiler);
        const next = await buildGeneration({
          models,
          policies,
          log,
          previous: built,
          reloadSae: (id) => loadMonitorSae(config.saes.find((s) => s.id === id)!, log),
          execution: config.execution,
          evidence: config.evidence,
        });
        const old = await running.swap(next.generation);
        built = next;
        await closeUnused(old, next.generation);
        setProviderGauge(telemetry, next.generation, old);
        telemetry.add("latentwatch.policy.reloads", 1, { result: "ok" });
        log.info("policies.reloaded", { rules: policies.rules.length });
        return { ok: true, rules: policies.rules.length };
      } catch (err) {
        telemetry.add("latentwatch.policy.reloads", 1, { result: "refused" });
        log.error("policies.reload_refused", {
          error: (err as Error).message,
          note: "the running rules stay in force",
        });
        return { ok: false, error: (err as Error).message };
      }
    });
  const watcher = opts.watchPolicies ? watchFiles(config.policies, reload, log) : null;
  let stopping: Promise<number> | null = null;

  return {
    config,
    bus: connected,
    pipeline: running,
    telemetry,
    saes,
    controlAddr: server?.addr ?? null,
    reload,
    stop: () =>
      stopping ??= (async () => {
        watcher?.close();
        await reloading;
        compiler.close();
        const undelivered = await running.stop();
        checkpoints.close();
        await recorder?.close();
        // live SSE streams end first: the server's shutdown waits for open responses
        feed.close();
        await server?.shutdown();
        for (const e of allEncoders(running.generation)) await e.close();
        if (!opts.bus) await connected.close();
        log.flush();
        return undelivered;
      })(),
  };
}
