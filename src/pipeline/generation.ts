/**
 * A generation: the encoders a policy set needs (only the latents its rules
 * read, where that is exact and cheap), the evidence encoders, the latent
 * labels and the steer actions resolved. `serve` builds one at start and
 * at each hot reload; offline replay builds the same one, so both encode
 * and evaluate alike.
 *
 * @module
 */
import type { CompiledPolicySet } from "../core/policy/compile.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import type { Encoder, SaeWeights } from "../core/sae.ts";
import { type SteerOp, SteerResolveError } from "../core/steer/protocol.ts";
import { resolveSteerAction } from "../core/steer/resolve.ts";
import {
  createOrtEncoder,
  createProbeEncoder,
  type ExecutionProviderSetting,
  type FullEncodePath,
  type ProviderReport,
  watchIsCheap,
} from "../runtime/ort_encoder.ts";
import type { NativeKernelsSetting } from "../runtime/native_library.ts";
import type { Logger } from "../shared/log.ts";
import type { MonitorModels } from "./models.ts";
import { sameLatents, verdictEncoders } from "./verdict_encoders.ts";

/**
 * What the pipeline evaluates with: the encoders and the policies they were
 * built for. A hot reload swaps the whole generation at once, between
 * batches, so a batch is always encoded and evaluated by one generation.
 */
export interface Generation {
  /** Encoder id (SAE or probe) → encoder. */
  encoders: ReadonlyMap<string, Encoder>;
  policies: CompiledPolicySet;
  /** SAE id → latent labels, attached to alerts. */
  labels?: ReadonlyMap<string, ReadonlyMap<number, string>>;
  /** Each steer action of the policies, resolved into what a tap applies. */
  steerOps?: ReadonlyMap<SteerAction, SteerOp>;
  /** SAE id → an encoder reporting every latent, for the evidence attached to alerts. */
  evidenceEncoders?: ReadonlyMap<string, Encoder>;
  /**
   * Signal id → what a gated frame's verdict is encoded with, first, when
   * the policies have rules that do not steer (`verdict_encoders.ts`);
   * absent: a gated frame waits for the whole evaluation.
   */
  verdictEncoders?: ReadonlyMap<string, Encoder>;
}

/** A generation plus what it was built from, so the next reload can reuse encoders. */
export interface BuiltGeneration {
  generation: Generation;
  /** Encoder id → the watched latents its encoder was built for. */
  watched: ReadonlyMap<string, Uint32Array>;
  /** Encoder id → the latents of a verdict encoder of its own (`verdict_encoders.ts`). */
  verdictWatched?: ReadonlyMap<string, Uint32Array>;
}

/** Options of {@linkcode buildGeneration}. */
export interface BuildGenerationOptions {
  models: MonitorModels;
  policies: CompiledPolicySet;
  log: Logger;
  /** The generation this one replaces: its encoders are reused where they fit. */
  previous?: BuiltGeneration;
  /** Reload an SAE's weights (serve drops W_enc once onnxruntime holds it). */
  reloadSae?: (id: string) => Promise<SaeWeights>;
  /** Where encoders run (`docs/gpu.md`). @default { provider: "auto" } */
  execution?: {
    provider: ExecutionProviderSetting;
    threads?: number;
    spin?: boolean;
    fullEncode?: FullEncodePath;
    nativeKernels?: NativeKernelsSetting;
  };
  /** Evidence on alerts: build evidence encoders when `topLatents > 0`. @default { topLatents: 0 } */
  evidence?: { topLatents: number };
  /**
   * Build the verdict encoders gated frames are answered with first
   * (`verdict_encoders.ts`); offline replay answers no gated frame. @default true
   */
  verdictEncoders?: boolean;
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
 * import type { CompiledPolicySet } from "../core/policy/compile.ts";
 * import type { SaeWeights } from "../core/sae.ts";
 * import { Logger } from "../shared/log.ts";
 * import { buildGeneration } from "./generation.ts";
 * import type { MonitorModels } from "./models.ts";
 * declare const models: MonitorModels;
 * declare const policies: CompiledPolicySet;
 * declare const reloadSae: (id: string) => Promise<SaeWeights>;
 * const log = new Logger();
 * const built = await buildGeneration({ models, policies, log });
 * const again = await buildGeneration({ models, policies, log, previous: built, reloadSae });
 * ```
 */
export async function buildGeneration(opts: BuildGenerationOptions): Promise<BuiltGeneration> {
  const { models, policies, log, previous, reloadSae } = opts;
  const execution = opts.execution ?? { provider: "auto" };
  const evidence = opts.evidence ?? { topLatents: 0 };
  const runOn = {
    provider: execution.provider,
    intraOpThreads: execution.threads,
    spinning: execution.spin ?? false,
    fullEncode: execution.fullEncode ?? "auto",
    nativeKernels: execution.nativeKernels ?? "auto",
  };
  const encoders = new Map<string, Encoder>();
  const evidenceEncoders = new Map<string, Encoder>();
  const watched = new Map<string, Uint32Array>();
  /** The SAEs encoded for their watched latents only (not TopK), and those latents. */
  const watchedOnly = new Map<string, Uint32Array>();
  for (const [id, sae] of models.saes) {
    const watch = policies.watchedLatents(id);
    if (watch.length === 0) {
      log.warn("sae.unwatched", { id, note: "no rule reads this SAE; it is not encoded" });
      continue;
    }
    watched.set(id, watch);
    const cheap = watchIsCheap(sae);
    if (cheap) watchedOnly.set(id, watch);
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
      path: (encoder as { path?: string }).path,
      ...kernelFields(encoder),
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
  const verdict = opts.verdictEncoders === false ? undefined : await verdictEncoders({
    policies,
    encoders,
    watched: watchedOnly,
    previous: {
      encoders: previous?.generation.verdictEncoders ?? new Map(),
      watched: previous?.verdictWatched ?? new Map(),
    },
    open: async (id, latents) => {
      const sae = models.saes.get(id)!;
      const weights = sae.wEnc.length > 0 ? sae : await reloadSae!(id);
      const encoder = await createOrtEncoder(weights, { watch: latents, ...runOn });
      log.info("encoder.ready", {
        id,
        mode: "verdict",
        why: "a gated step's verdict waits only for the latents the steering rules read",
        ...kernelFields(encoder),
        watched: latents.length,
        ...providerFields(id, execution.provider, encoder, log),
      });
      return encoder;
    },
  });
  return {
    generation: {
      encoders,
      policies,
      labels,
      steerOps,
      evidenceEncoders,
      ...(verdict ? { verdictEncoders: verdict.encoders } : {}),
    },
    watched,
    ...(verdict ? { verdictWatched: verdict.watched } : {}),
  };

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
 * import { closeUnused, type Generation } from "./generation.ts";
 * declare const oldGeneration: Generation;
 * declare const current: Generation;
 * await closeUnused(oldGeneration, current);
 * ```
 */
export async function closeUnused(old: Generation, current: Generation): Promise<void> {
  const kept = new Set(allEncoders(current));
  for (const e of new Set(allEncoders(old))) if (!kept.has(e)) await e.close();
}

/**
 * Every encoder a generation holds (signal, evidence and verdict encoders), each once.
 *
 * @example
 * ```ts
 * import { allEncoders, type Generation } from "./generation.ts";
 * declare const generation: Generation;
 * for (const e of allEncoders(generation)) await e.close();
 * ```
 */
export function allEncoders(g: Generation): Encoder[] {
  return [
    ...new Set([
      ...g.encoders.values(),
      ...(g.evidenceEncoders?.values() ?? []),
      ...(g.verdictEncoders?.values() ?? []),
    ]),
  ];
}

/** Which native kernels an encoder runs and why not (`encoder.ready`'s `kernels`, `kernels_note`). */
function kernelFields(encoder: Encoder): { kernels?: string; kernels_note?: string } {
  const e = encoder as {
    int8Kernel?: string;
    int8KernelNote?: string;
    watchedKernel?: string;
    watchedKernelNote?: string;
  };
  return {
    kernels: e.int8Kernel ?? e.watchedKernel,
    kernels_note: e.int8KernelNote ?? e.watchedKernelNote,
  };
}
