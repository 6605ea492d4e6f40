/**
 * What the start-up steps of a monitor share ({@linkcode MonitorContext}) and
 * the helpers they call: building a generation, readiness, hot reload, the
 * provider gauge and the policy file watcher.
 *
 * @module
 */
import type { LiveStore } from "../workbench/live_source.ts";
import type { SaeWeights } from "../core/sae.ts";

import type { Bus } from "../bus/bus.ts";

import type { MonitorConfig } from "../config/monitor.ts";
import { dirname, resolve } from "node:path";
import {
  buildGeneration,
  type BuiltGeneration,
  closeUnused,
  compileMonitorPolicies,
  loadMonitorSae,
  type MonitorModels,
} from "./components.ts";

import { PolicyCompiler, PolicyWorkerError } from "./policy_compiler.ts";
import { Logger } from "../shared/log.ts";
import { type Generation, Pipeline } from "./pipeline.ts";
import { encoderProvider } from "../runtime/ort_encoder.ts";
import { TraceWriter } from "../traces/writer.ts";
import { JetStreamSink } from "../sinks/jetstream/sink.ts";
import { SeqCheckpoints } from "./checkpoints.ts";
import type { AlertSink } from "../sinks/sink.ts";

import { AlertFeed } from "./alert_feed.ts";
import { Telemetry } from "../shared/telemetry.ts";

import type { ReloadResult, StartOptions } from "./monitor.ts";
import type { PartitionOwner } from "./partition_owner.ts";

/** `latentwatch.encoder.provider`: 1 per live encoder {encoder, provider}; encoders a reload dropped go to 0. */
export function setProviderGauge(
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
export function dropEncoderWeights(saes: Map<string, SaeWeights>): void {
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
export function watchFiles({ files, onChange, log }: WatchFilesOptions): { close(): void } {
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
export const DUPLICATE_WINDOW_MS = 10 * 60_000;

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
  /** The workbench's store of recent requests (`/ui/`), while the control API runs. */
  live?: LiveStore;
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
  /** Scale-out: this sidecar's share of the partitions. */
  owner?: PartitionOwner;
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
export function buildFor(ctx: MonitorContext, o: BuildOptions): Promise<BuiltGeneration> {
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
export function notReady(ctx: MonitorContext): string[] {
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
  // scale-out: owning no partition is ready (peers have them); not renewing leases is not
  const leases = ctx.owner?.problem;
  if (leases) why.push(leases);
  return why;
}

/**
 * Hot reload: validate and compile the new rules, build any encoder they
 * need, then swap everything at once between batches. A bad change is
 * refused with its error and the running set carries on. Reloads queue up.
 */
export function reload(ctx: MonitorContext): Promise<ReloadResult> {
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
