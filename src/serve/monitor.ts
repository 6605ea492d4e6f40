/**
 * Start a monitor from its config: load the SAEs, compile the policies,
 * connect the bus, run the pipeline and the control API. Shared by
 * `latentwatch serve`, the demo, the tests and the bench.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { tapSubjectFilter } from "../core/frame.ts";
import { compilePolicies, type PolicyRule } from "../core/policy.ts";
import type { Encoder, LinearProbe, SaeWeights, SparseLatents } from "../core/sae.ts";
import type { Frame } from "../core/frame.ts";
import type { Bus } from "../bus/bus.ts";
import { connectNatsBus } from "../bus/nats_bus.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { loadPolicyFile } from "../config/policy_file.ts";
import { attachLabels, findLabelsNextTo, loadNeuronpediaLabels } from "../formats/neuronpedia.ts";
import { loadProbe } from "../formats/probe.ts";
import { loadSae } from "../formats/load.ts";
import { createOrtEncoder, createProbeEncoder, watchIsCheap } from "../runtime/ort_encoder.ts";
import { controlApi, serveControlApi } from "./control_api.ts";
import { Logger } from "./log.ts";
import { Pipeline } from "./pipeline.ts";
import { Telemetry } from "./telemetry.ts";

/** Hooks and overrides for {@linkcode startMonitor}. */
export interface StartOptions {
  /** Use this bus instead of connecting to `config.nats.url` (demo, tests). */
  bus?: Bus;
  log?: Logger;
  onAlert?: (alert: Alert) => void;
  onPublished?: (alert: Alert, seq: number, duplicate: boolean) => void;
  onEncoded?: (frames: readonly Frame[], latents: ReadonlyMap<string, SparseLatents[]>) => void;
  /** Override the control API address (`host:port`); `null` disables it. */
  controlListen?: string | null;
}

/** A running monitor. */
export interface RunningMonitor {
  config: MonitorConfig;
  bus: Bus;
  pipeline: Pipeline;
  telemetry: Telemetry;
  saes: ReadonlyMap<string, SaeWeights>;
  /** Address of the control API, when it runs. */
  controlAddr: Deno.NetAddr | null;
  /** Stop; resolves with the number of alerts that could not be delivered in time. */
  stop(): Promise<number>;
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
  const log = opts.log ?? new Logger();
  const telemetry = new Telemetry();

  const saes = new Map<string, SaeWeights>();
  for (const s of config.saes) {
    let reported = -1;
    let sae = await loadSae(s.path, {
      format: s.format,
      scalingFactor: s.scalingFactor,
      // large SAEs take seconds: say how far loading is, every 25%
      onProgress: (done, total, phase) => {
        const pct = total > 0 ? Math.floor((done / total) * 4) * 25 : 0;
        if (pct === reported) return;
        reported = pct;
        log.info("sae.loading", { id: s.id, phase, percent: pct });
      },
    });
    const labelsPath = s.labels ?? await findLabelsNextTo(s.path);
    if (labelsPath) {
      const labels = await loadNeuronpediaLabels(labelsPath, {
        neuronpediaId: sae.neuronpediaId ?? undefined,
        onWarning: (message) => log.warn("labels.warning", { id: s.id, path: labelsPath, message }),
      });
      sae = attachLabels(sae, labels);
    }
    saes.set(s.id, sae);
    log.info("sae.loaded", {
      id: s.id,
      path: s.path,
      format: sae.format,
      architecture: sae.architecture,
      d_in: sae.dIn,
      d_sae: sae.dSae,
      dtype: sae.dtype,
      labels: sae.labels?.size ?? 0,
    });
  }
  const probes = new Map<string, LinearProbe>();
  for (const p of config.probes) {
    const probe = await loadProbe(p.path);
    probes.set(p.id, probe);
    log.info("probe.loaded", {
      id: p.id,
      path: p.path,
      d_in: probe.dIn,
      scores: probe.n,
      link: probe.link,
    });
  }
  const widths = [
    ...[...saes].map(([id, s]) => [id, s.dIn] as const),
    ...[...probes].map(([id, p]) => [id, p.dIn] as const),
  ];
  if (new Set(widths.map(([, d]) => d)).size !== 1) {
    throw new RangeError(
      `${config.file}: expected every SAE and probe of a monitor to read the same d_in, found ${
        widths.map(([id, d]) => `${id}=${d}`).join(", ")
      }`,
    );
  }
  const dIn = widths[0][1];

  const rules: PolicyRule[] = [];
  for (const file of config.policies) rules.push(...await loadPolicyFile(file));
  const signals = new Map<string, { dSae: number; dense?: boolean }>(saes);
  for (const [id, p] of probes) signals.set(id, { dSae: p.n, dense: true });
  const policies = compilePolicies(rules, signals);
  log.info("policies.loaded", { files: config.policies.length, rules: policies.rules.length });

  // Encode only what the rules read: the watched encoder columns where that is
  // exact and cheap (ReLU, JumpReLU, gated); TopK needs every latent to rank them.
  const encoders = new Map<string, Encoder>();
  for (const [id, sae] of saes) {
    const watch = policies.watchedLatents(id);
    if (watch.length === 0) {
      log.warn("sae.unwatched", { id, note: "no rule reads this SAE; it is not encoded" });
      continue;
    }
    const cheap = watchIsCheap(sae);
    encoders.set(id, await createOrtEncoder(sae, { watch }));
    // onnxruntime now holds the encoder weights it needs; the JS copy of W_enc
    // (the largest tensor, 1.8 GB for a 3584×131072 SAE) is not used again
    saes.set(id, { ...sae, wEnc: new Float32Array(0) });
    log.info("encoder.ready", {
      id,
      mode: cheap ? "watched" : "full",
      watched: watch.length,
      why: cheap ? undefined : `${sae.architecture} ranks every latent, so all are computed`,
    });
  }
  for (const [id, probe] of probes) encoders.set(id, await createProbeEncoder(probe));

  const subject = config.nats.subject ?? tapSubjectFilter(config.model, config.hook);
  // The control API comes up before NATS so liveness holds (and readiness says
  // why not) while the broker is still unreachable.
  let bus: Bus | null = opts.bus ?? null;
  let pipeline: Pipeline | null = null;
  const listen = opts.controlListen === undefined ? config.control?.listen : opts.controlListen;
  let server: Deno.HttpServer<Deno.NetAddr> | null = null;
  if (listen) {
    const app = controlApi({
      telemetry,
      ready: () => pipeline !== null && (bus?.connected ?? false),
      info: () => ({
        monitor: config.monitor,
        model: config.model,
        hook: config.hook,
        subject,
        nats: { url: config.nats.url, connected: bus?.connected ?? false },
        provider: "cpu",
        saes: [...saes].map(([id, s]) => ({
          id,
          architecture: s.architecture,
          d_in: s.dIn,
          d_sae: s.dSae,
        })),
        rules: policies.rules.length,
        active_requests: pipeline?.activeRequests ?? 0,
      }),
    });
    server = serveControlApi(app, listen);
    log.info("control.listening", { addr: `${server.addr.hostname}:${server.addr.port}` });
  }

  if (!bus) {
    log.info("nats.connecting", { url: config.nats.url, note: "waits until the server answers" });
    bus = await connectNatsBus({
      url: config.nats.url,
      name: `latentwatch:${config.monitor}`,
      onStatus: (s) => {
        if (s.type === "error") telemetry.add("latentwatch.bus.errors", 1, { type: s.type });
        log.warn(`nats.${s.type}`, { url: config.nats.url, detail: s.detail });
      },
    });
    log.info("nats.connected", { url: config.nats.url });
  }
  const connected = bus;
  const streamSpec = {
    name: config.alerts.stream,
    subjects: [config.alerts.subject],
    duplicateWindowMs: DUPLICATE_WINDOW_MS,
  };
  await connected.ensureStream(streamSpec);

  pipeline = new Pipeline({
    monitor: config.monitor,
    model: config.model,
    hook: config.hook,
    subject,
    dIn,
    encoders,
    policies,
    labels: new Map([...saes].flatMap(([id, s]) => s.labels ? [[id, s.labels] as const] : [])),
    batching: config.batching,
    alerts: { subject: config.alerts.subject, maxQueue: config.alerts.maxQueue },
    bus: connected,
    telemetry,
    log,
    ensureStream: () => connected.ensureStream(streamSpec),
    onAlert: opts.onAlert,
    onPublished: opts.onPublished,
    onEncoded: opts.onEncoded,
  });
  pipeline.start();
  log.info("monitor.started", { monitor: config.monitor, subject, alerts: config.alerts.subject });
  const running = pipeline;

  return {
    config,
    bus: connected,
    pipeline: running,
    telemetry,
    saes,
    controlAddr: server?.addr ?? null,
    stop: async () => {
      const undelivered = await running.stop();
      await server?.shutdown();
      for (const e of encoders.values()) await e.close();
      if (!opts.bus) await connected.close();
      log.flush();
      return undelivered;
    },
  };
}
