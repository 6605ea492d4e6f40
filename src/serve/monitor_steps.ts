/**
 * The start-up steps of a monitor ({@linkcode MONITOR_STEPS}), what they
 * share ({@linkcode MonitorContext}), readiness and hot reload. Each step
 * opens one thing and closes it again; `./steps.ts` runs them in order and
 * stops them in reverse. `./monitor.ts` builds the context and runs them.
 *
 * @module
 */

import { connectNatsBus } from "../bus/nats_bus.ts";
import { natsConfigPasswordProblem } from "../bus/nats_config_password.ts";
import { controlToken, monitorRedaction, natsPassword } from "./secrets.ts";
import { redactFrameText } from "../core/redact.ts";
import type { Hono } from "hono";
import { loadPolicyFileDef } from "../config/policy_file.ts";
import { workbenchApi } from "../workbench/api.ts";
import { isLoopback } from "../workbench/auth.ts";
import { liveStore } from "../workbench/live_source.ts";

import { allEncoders, compileMonitorPolicies, loadMonitorModels } from "./components.ts";
import { controlApi, serveControlApi } from "./control_api.ts";
import { PolicyCompiler } from "./policy_compiler.ts";
import { monitorStats } from "./monitor_stats.ts";

import { Pipeline } from "./pipeline.ts";

import { TraceWriter } from "../traces/writer.ts";
import { JetStreamSink } from "../sinks/jetstream/sink.ts";
import { SeqCheckpoints } from "./checkpoints.ts";

import { createSinks } from "../sinks/factory.ts";
import { AlertFeed } from "./alert_feed.ts";

import { type Step } from "./steps.ts";
import { PARTITIONS_STEP } from "./partition_step.ts";

import {
  buildFor,
  dropEncoderWeights,
  DUPLICATE_WINDOW_MS,
  type MonitorContext,
  notReady,
  reload,
  setProviderGauge,
  watchFiles,
} from "./monitor_context.ts";

export type { MonitorContext };
export { reload };

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
    start: async (ctx) => {
      const { config, opts, log } = ctx;
      const feed = ctx.feed = new AlertFeed({
        ...(config.control?.maxStreamsPerClient !== undefined
          ? { maxPerClient: config.control.maxStreamsPerClient }
          : {}),
      });
      const listen = opts.controlListen === undefined ? config.control?.listen : opts.controlListen;
      if (!listen) return;
      const ui = await workbenchRoutes(ctx, listen);
      const token = controlToken(config);
      const app = controlApi({
        ...(token !== undefined ? { token } : {}),
        telemetry: ctx.telemetry,
        alerts: feed,
        ready: () => notReady(ctx).length === 0,
        ...(config.scaleOut
          ? {
            partitions: () =>
              ctx.owner
                ? { ...ctx.owner.stats(), subscribed: ctx.pipeline?.ownedPartitions ?? [] }
                : null,
          }
          : {}),
        notReadyReasons: () => notReady(ctx),
        ...(ui ? { ui } : {}),
        info: () => monitorStats(ctx),
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
      const pass = natsPassword(config);
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
        ...(ctx.opts.signal ? { signal: ctx.opts.signal } : {}),
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
          replicas: config.alerts.replicas,
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
      const { hashKey } = monitorRedaction(ctx.config);
      const extra = ctx.extraSinks = createSinks(ctx.config.sinks, {
        log: ctx.log,
        ...(hashKey ? { redactHashKey: hashKey } : {}),
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
      const { hashKey } = monitorRedaction(config);
      ctx.recorder = await TraceWriter.create(record.path, {
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        ...(record.redact !== "none" ? { meta: { redact: record.redact } } : {}),
        sampling: {
          ...(record.every !== undefined ? { every: record.every } : {}),
          ...(record.requests !== undefined ? { requests: record.requests } : {}),
        },
      }, {
        redact: { mode: record.redact, ...(hashKey ? { hashKey } : {}) },
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
      // the floor of every alert: the stream, its spool, the feed, the live view
      const redaction = monitorRedaction(config);
      const pipeline = ctx.pipeline = new Pipeline({
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        subject: ctx.subject,
        ...(config.scaleOut ? { partitions: config.scaleOut.partitions } : {}),
        dIn: ctx.models!.dIn,
        ...ctx.built!.generation,
        batching: config.batching,
        steering: config.steering,
        evidence: config.evidence,
        redaction,
        sinks: [ctx.jetstream!, ...ctx.extraSinks!],
        durable: ctx.jetstream!,
        checkpoints: ctx.checkpoints!,
        bus,
        telemetry: ctx.telemetry,
        log: ctx.log,
        onMessage: recorder ? (msg) => recorder.write(msg) : undefined,
        onAlert: (alert) => {
          feed!.publish(alert);
          ctx.live?.alert(alert);
          opts.onAlert?.(alert);
        },
        onEncoded: (frames, latents, batch) => {
          ctx.live?.push(redactFrameText(frames, redaction), latents);
          opts.onEncoded?.(frames, latents, batch);
        },
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
  PARTITIONS_STEP,
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
 * The workbench's routes for the control API at `listen`, over a live store
 * of recent requests (`ctx.live`); off loopback they need the bearer token
 * `control.token_env` names (a start-up error without one).
 */
async function workbenchRoutes(ctx: MonitorContext, listen: string): Promise<Hono | undefined> {
  const { config, opts } = ctx;
  const host = listen.slice(0, listen.lastIndexOf(":"));
  const token = controlToken(config);
  if (token === undefined && !isLoopback(host)) {
    throw new TypeError(
      `${config.file}: control: expected control.token_env (a bearer token for /ui/) with the ` +
        `non-loopback address ${listen}, found none`,
    );
  }
  if (opts.workbench === false) return undefined;
  const files = [];
  for (const f of config.policies) files.push(await loadPolicyFileDef(f));
  const store = ctx.live = liveStore({
    config,
    models: ctx.models!,
    files,
    generation: () => ctx.pipeline?.generation ?? ctx.built!.generation,
  }, { maxRequests: opts.workbench?.maxRequests });
  return workbenchApi(
    { mode: "live", store, evaluation: store.evaluation },
    {
      writable: opts.workbench?.writable === true,
      ...(token !== undefined ? { token } : {}),
      closed: ctx.feed!.closed,
    },
  );
}
