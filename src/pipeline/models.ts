/**
 * A monitor's models, loaded: its SAEs (any upstream format, with labels)
 * and linear probes, and the activation width they all read. What `serve`
 * loads at start and what offline replay loads, alike.
 *
 * @module
 */
import type { SignalInfo } from "../core/policy/compile.ts";
import type { LinearProbe, SaeFormatName, SaeWeights } from "../core/sae.ts";
import { saeDOut } from "../core/sae.ts";
import { decoderCosines, matrixRow } from "../core/family.ts";
import { attachLabels, findLabelsNextTo, loadNeuronpediaLabels } from "../formats/neuronpedia.ts";
import { loadProbe } from "../formats/probe.ts";
import { loadSae } from "../formats/load.ts";
import type { Logger } from "../shared/log.ts";

/** The SAEs and probes of a monitor, and the activation width they all read. */
export interface MonitorModels {
  saes: Map<string, SaeWeights>;
  probes: Map<string, LinearProbe>;
  dIn: number;
}

/** One SAE of a monitor config (`saes:`), paths absolute. */
export interface SaeSource {
  id: string;
  path: string;
  /** Upstream format; detected from the files when absent. */
  format?: SaeFormatName;
  /** Neuronpedia explanations export; an `explanations/` folder beside the SAE otherwise. */
  labels?: string;
  /** SAELens `expected_average_only_in` scaling factor. */
  scalingFactor?: number;
}

/** Where a monitor's models are (the `MonitorConfig` fields read). */
export interface ModelSources {
  /** The monitor file, for messages. */
  file: string;
  saes: readonly SaeSource[];
  probes: readonly { id: string; path: string }[];
}

/**
 * Load one SAE of a monitor: its weights (format detected unless given),
 * its labels (`labels:` or an `explanations/` folder beside it).
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 * import { loadMonitorSae } from "./models.ts";
 * const sae = await loadMonitorSae({ id: "res", path: "/models/sae" }, new Logger());
 * ```
 */
export async function loadMonitorSae(
  s: SaeSource,
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
 * import { Logger } from "../shared/log.ts";
 * import { loadMonitorModels } from "./models.ts";
 * const config = { file: "m.yaml", saes: [{ id: "res", path: "/models/sae" }], probes: [] };
 * const { saes, probes, dIn } = await loadMonitorModels(config, new Logger());
 * ```
 */
export async function loadMonitorModels(
  config: ModelSources,
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
 * import { compilePolicySet } from "../core/policy/compile.ts";
 * import type { PolicyFileDef } from "../core/policy/ast.ts";
 * import { type MonitorModels, monitorSignals } from "./models.ts";
 * declare const models: MonitorModels;
 * declare const files: PolicyFileDef[];
 * compilePolicySet(files, monitorSignals(models));
 * ```
 */
export function monitorSignals(models: MonitorModels): Map<string, SignalInfo> {
  const signals = new Map<string, SignalInfo>();
  for (const [id, s] of models.saes) {
    signals.set(id, {
      kind: "sae",
      dSae: s.dSae,
      ...(s.labels ? { labels: s.labels } : {}),
      decoderCosines: saeDecoderCosines(s),
    });
  }
  for (const [id, p] of models.probes) signals.set(id, { kind: "probe", dSae: p.n });
  return signals;
}

/**
 * `latent` → the cosine of every decoder row of `sae` with that latent's
 * (family tests), computed row by row on demand and kept per latent asked.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * saeDecoderCosines(sae)(4123)[9001]; // cosine of latent 9001's decoder with 4123's
 * ```
 */
export function saeDecoderCosines(sae: SaeWeights): (latent: number) => Float32Array {
  const done = new Map<number, Float32Array>();
  return (latent) => {
    const width = saeDOut(sae);
    let c = done.get(latent);
    if (!c) {
      done.set(latent, c = decoderCosines(sae.wDec, width, matrixRow(sae.wDec, width, latent)));
    }
    return c;
  };
}
