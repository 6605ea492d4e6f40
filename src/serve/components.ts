/**
 * What a monitor runs, loaded from its config: SAEs (any upstream format,
 * with labels), probes, policies, and the encoders the policies need. Shared
 * by `serve` (start and hot reload) and the offline tools (replay, policy
 * test, calibrate), so they evaluate exactly as the sidecar does.
 *
 * @module
 */
import {
  type CompiledPolicySet,
  compilePolicySet,
  type SignalInfo,
} from "../core/policy/compile.ts";
import type { PolicyFileDef, SteerAction } from "../core/policy/ast.ts";
import type { Encoder, LinearProbe, SaeWeights } from "../core/sae.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { readPolicyFile } from "../config/policy_file.ts";
import { formatProblem } from "../core/policy/compile.ts";
import { formatIssue } from "../config/errors.ts";
import { attachLabels, findLabelsNextTo, loadNeuronpediaLabels } from "../formats/neuronpedia.ts";
import { loadProbe } from "../formats/probe.ts";
import { loadSae } from "../formats/load.ts";
import { type SteerOp, SteerResolveError } from "../core/steer/protocol.ts";
import { resolveSteerAction } from "../core/steer/resolve.ts";
import {
  createOrtEncoder,
  createProbeEncoder,
  type ProviderReport,
  watchIsCheap,
} from "../runtime/ort_encoder.ts";
import type { Logger } from "../shared/log.ts";
import { type PolicyCompiler, PolicyWorkerError } from "./policy_compiler.ts";
import type { Generation } from "./pipeline.ts";

/** The SAEs and probes of a monitor, and the activation width they all read. */
export interface MonitorModels {
  saes: Map<string, SaeWeights>;
  probes: Map<string, LinearProbe>;
  dIn: number;
}

/** A generation plus what it was built from, so the next reload can reuse encoders. */
export interface BuiltGeneration {
  generation: Generation;
  /** Encoder id → the watched latents its encoder was built for. */
  watched: ReadonlyMap<string, Uint32Array>;
}

/**
 * Load one SAE of a monitor: its weights (format detected unless given),
 * its labels (`labels:` or an `explanations/` folder beside it).
 *
 * @example
 * ```ts
 * const sae = await loadMonitorSae(config.saes[0], log);
 * ```
 */
export async function loadMonitorSae(
  s: MonitorConfig["saes"][number],
  log: Logger,
): Promise<SaeWeights> {
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
  return sae;
}

/**
 * Load every SAE and probe of `config` and check they read the same width.
 *
 * @example
 * ```ts
 * const { saes, probes, dIn } = await loadMonitorModels(config, log);
 * ```
 */
export async function loadMonitorModels(
  config: MonitorConfig,
  log: Logger,
): Promise<MonitorModels> {
  const saes = new Map<string, SaeWeights>();
  for (const s of config.saes) saes.set(s.id, await loadMonitorSae(s, log));
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
  return { saes, probes, dIn: widths[0][1] };
}

/**
 * The signals policies can read: each SAE (width, labels) and each probe.
 *
 * @example
 * ```ts
 * compilePolicySet(files, monitorSignals(models));
 * ```
 */
export function monitorSignals(models: MonitorModels): Map<string, SignalInfo> {
  const signals = new Map<string, SignalInfo>();
  for (const [id, s] of models.saes) {
    signals.set(id, { kind: "sae", dSae: s.dSae, ...(s.labels ? { labels: s.labels } : {}) });
  }
  for (const [id, p] of models.probes) signals.set(id, { kind: "probe", dSae: p.n });
  return signals;
}

/**
 * Load and compile the policy files of `config` against its SAEs and probes.
 * Throws (every problem with file:line) when a file is invalid; nothing is
 * changed then. Warnings are logged. With `compiler`, the files are read and
 * compiled in its worker, off the event loop (what a hot reload does). Only
 * when the worker cannot start at all are they compiled here instead; a
 * worker that crashed, timed out or answered with an unexpected error
 * throws its {@linkcode PolicyWorkerError} (a reload is refused, the
 * running set stays), so a policy set that kills the worker never stalls the
 * event loop.
 *
 * @example
 * ```ts
 * const policies = await compileMonitorPolicies(config, models, log);
 * const again = await compileMonitorPolicies(config, models, log, new PolicyCompiler());
 * ```
 */
export async function compileMonitorPolicies(
  config: MonitorConfig,
  models: MonitorModels,
  log?: Logger,
  compiler?: PolicyCompiler,
): Promise<CompiledPolicySet> {
  const signals = monitorSignals(models);
  if (compiler) {
    try {
      const { set, fileWarnings } = await compiler.compile(config.policies, signals);
      for (const w of fileWarnings) log?.warn("policy.warning", { warning: w });
      for (const w of set.warnings) log?.warn("policy.warning", { warning: formatProblem(w) });
      return set;
    } catch (err) {
      if (!(err instanceof PolicyWorkerError) || err.kind !== "unavailable") throw err;
      log?.warn("policies.worker_unavailable", {
        error: err.message,
        note: "compiling in-thread",
      });
    }
  }
  const files: PolicyFileDef[] = [];
  for (const file of config.policies) {
    const { def, warnings } = await readPolicyFile(file);
    files.push(def);
    for (const w of warnings) log?.warn("policy.warning", { warning: formatIssue(w) });
  }
  const set = compilePolicySet(files, signals);
  for (const w of set.warnings) log?.warn("policy.warning", { warning: formatProblem(w) });
  return set;
}

function sameLatents(a: Uint32Array | undefined, b: Uint32Array): boolean {
  return a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Build the encoders `policies` need and bundle them into a generation. Only
 * what the rules read is encoded: the watched encoder columns where that is
 * exact and cheap (ReLU, JumpReLU, gated); TopK ranks every latent, so it is
 * encoded in full. An encoder of `previous` whose watched set is unchanged is
 * reused; `reloadSae` is called when a new encoder needs an SAE's weights
 * (serve keeps no JS copy of W_enc once onnxruntime holds it).
 *
 * New encoders run on the execution provider `execution.provider` picks
 * (default `auto`; `docs/gpu.md`) with `execution.threads` intra-op threads;
 * `encoder.ready` says which provider each one got, and a provider that
 * could not start is logged as `encoder.provider_fallback` with the reason.
 * Read it back with `encoderProvider(encoder)`.
 *
 * @example
 * ```ts
 * const built = await buildGeneration(models, policies, log);
 * const again = await buildGeneration(models, policies, log, built, reload, config.execution);
 * ```
 */
export async function buildGeneration(
  models: MonitorModels,
  policies: CompiledPolicySet,
  log: Logger,
  previous?: BuiltGeneration,
  reloadSae?: (id: string) => Promise<SaeWeights>,
  execution: Pick<MonitorConfig["execution"], "provider" | "threads"> & { spin?: boolean } = {
    provider: "auto",
  },
  evidence: Pick<MonitorConfig["evidence"], "topLatents"> = { topLatents: 0 },
): Promise<BuiltGeneration> {
  const runOn = {
    provider: execution.provider,
    intraOpThreads: execution.threads,
    spinning: execution.spin ?? false,
  };
  const encoders = new Map<string, Encoder>();
  const evidenceEncoders = new Map<string, Encoder>();
  const watched = new Map<string, Uint32Array>();
  for (const [id, sae] of models.saes) {
    const watch = policies.watchedLatents(id);
    if (watch.length === 0) {
      log.warn("sae.unwatched", { id, note: "no rule reads this SAE; it is not encoded" });
      continue;
    }
    watched.set(id, watch);
    const cheap = watchIsCheap(sae);
    const reuse = previous?.generation.encoders.get(id);
    // a full (TopK) encoder reports every active latent whatever the rules read,
    // so it serves any watched set, and the evidence too
    if (reuse && (!cheap || sameLatents(previous!.watched.get(id), watch))) {
      encoders.set(id, reuse);
      const ev = previous!.generation.evidenceEncoders?.get(id);
      if (evidence.topLatents > 0) {
        evidenceEncoders.set(id, ev ?? await evidenceEncoder(id, sae, reuse, cheap));
      }
      continue;
    }
    const weights = sae.wEnc.length > 0 ? sae : await reloadSae!(id);
    const encoder = await createOrtEncoder(weights, { ...(cheap ? { watch } : {}), ...runOn });
    encoders.set(id, encoder);
    if (evidence.topLatents > 0) {
      const ev = previous?.generation.evidenceEncoders?.get(id);
      evidenceEncoders.set(
        id,
        ev && cheap ? ev : await evidenceEncoder(id, weights, encoder, cheap),
      );
    }
    log.info("encoder.ready", {
      id,
      mode: cheap ? "watched" : "full",
      watched: watch.length,
      why: cheap ? undefined : `${sae.architecture} ranks every latent, so all are computed`,
      ...providerFields(id, execution.provider, encoder, log),
    });
  }
  for (const [id, probe] of models.probes) {
    const reuse = previous?.generation.encoders.get(id);
    if (reuse) {
      encoders.set(id, reuse);
      continue;
    }
    const encoder = await createProbeEncoder(probe, runOn);
    encoders.set(id, encoder);
    log.info("encoder.ready", {
      id,
      mode: "probe",
      ...providerFields(id, execution.provider, encoder, log),
    });
  }
  const labels = new Map(
    [...models.saes].flatMap(([id, s]) => s.labels ? [[id, s.labels] as const] : []),
  );
  const steerOps = await resolveSteering(models, policies, previous, reloadSae);
  return { generation: { encoders, policies, labels, steerOps, evidenceEncoders }, watched };

  /**
   * The encoder the evidence on alerts uses: every latent of the SAE. A full
   * encoder is its own; a watched one needs a second session with all of
   * W_enc (its memory is the price of evidence; `evidence.top_latents: 0`
   * saves it).
   */
  async function evidenceEncoder(
    id: string,
    sae: SaeWeights,
    main: Encoder,
    cheap: boolean,
  ): Promise<Encoder> {
    if (!cheap) return main;
    const weights = sae.wEnc.length > 0 ? sae : await reloadSae!(id);
    const encoder = await createOrtEncoder(weights, runOn);
    log.info("encoder.ready", {
      id,
      mode: "evidence",
      why: "alerts carry the flagged tokens' strongest latents (evidence.top_latents)",
      ...providerFields(id, execution.provider, encoder, log),
    });
    return encoder;
  }
}

/**
 * The provider fields of an `encoder.ready` line; a fallback worth a warning
 * (an explicit provider, or one that refused this model) is also logged as
 * `encoder.provider_fallback`. When `auto` found no GPU provider here, the
 * reason rides on `encoder.ready` as `provider_note`.
 */
function providerFields(
  id: string,
  requested: string,
  encoder: ProviderReport,
  log: Logger,
): Record<string, string> {
  if (encoder.providerFallback) {
    log.warn("encoder.provider_fallback", {
      id,
      requested,
      provider: encoder.provider,
      reason: encoder.providerNote,
    });
    return { provider: encoder.provider };
  }
  return {
    provider: encoder.provider,
    ...(encoder.providerNote ? { provider_note: encoder.providerNote } : {}),
  };
}

/**
 * Resolve every steer action of `policies` into the operation a tap applies
 * (`docs/steering.md`), once per generation, so a rule that cannot steer
 * (an SAE with per-token normalisation, a transcoder) is refused at start or
 * reload with its file:line, not when it fires. Operations of `previous`
 * for the same action are reused (serve keeps no JS copy of W_enc).
 */
async function resolveSteering(
  models: MonitorModels,
  policies: CompiledPolicySet,
  previous?: BuiltGeneration,
  reloadSae?: (id: string) => Promise<SaeWeights>,
): Promise<Map<SteerAction, SteerOp>> {
  const known = new Map<string, SteerOp>();
  for (const [action, op] of previous?.generation.steerOps ?? []) {
    known.set(JSON.stringify(action), op);
  }
  const full = new Map<string, SaeWeights>();
  const weightsOf = async (id: string) => {
    const sae = models.saes.get(id);
    if (!sae || sae.wEnc.length > 0 || !reloadSae) return sae;
    if (!full.has(id)) full.set(id, await reloadSae(id));
    return full.get(id);
  };
  const ops = new Map<SteerAction, SteerOp>();
  for (const rule of policies.rules) {
    for (const action of rule.steer) {
      const reuse = known.get(JSON.stringify(action));
      if (reuse) {
        ops.set(action, reuse);
        continue;
      }
      const saeId = "sae" in action
        ? action.sae
        : "direction" in action && "sae" in action.direction
        ? action.direction.sae
        : undefined;
      const saes = new Map<string, SaeWeights>();
      const weights = saeId === undefined ? undefined : await weightsOf(saeId);
      if (saeId !== undefined && weights) saes.set(saeId, weights);
      try {
        ops.set(action, resolveSteerAction(action, saes, models.dIn));
      } catch (err) {
        const src = rule.def.source;
        throw new SteerResolveError(
          `${src.file}:${src.line}: rule ${rule.id}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
  }
  return ops;
}

/**
 * Close the encoders of `old` that `current` does not use.
 *
 * @example
 * ```ts
 * await closeUnused(oldGeneration, pipeline.generation);
 * ```
 */
export async function closeUnused(old: Generation, current: Generation): Promise<void> {
  const kept = new Set(allEncoders(current));
  for (const e of new Set(allEncoders(old))) if (!kept.has(e)) await e.close();
}

/**
 * Every encoder a generation holds (signal and evidence encoders), each once.
 *
 * @example
 * ```ts
 * for (const e of allEncoders(generation)) await e.close();
 * ```
 */
export function allEncoders(g: Generation): Encoder[] {
  return [...new Set([...g.encoders.values(), ...(g.evidenceEncoders?.values() ?? [])])];
}
