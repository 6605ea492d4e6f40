/**
 * `latentwatch sae inspect`: what a downloaded SAE or transcoder is (shape,
 * architecture, hooks, where each setting came from, where its encoder would
 * run), optionally one latent in detail, as text or JSON.
 *
 * @module
 */
import type { SaeWeights, SettingProvenance } from "../core/sae.ts";
import { saeDOut } from "../core/sae.ts";
import {
  attachLabels,
  findLabelsNextTo,
  readNeuronpediaExplanations,
} from "../formats/neuronpedia.ts";
import { loadSae, type LoadSaeOptions } from "../formats/load.ts";
import type { ExecutionProviderSetting, ProviderReport } from "../runtime/provider.ts";
import { CliInputError, providerOf, writeAll } from "./sae_support.ts";
/**
 * `sae` with labels from `labels` (a file or folder), else from an
 * `explanations/` folder next to the SAE, else as it is.
 *
 * @example
 * ```ts
 * import { loadSae } from "../formats/load.ts";
 * const sae = await withLabels(await loadSae("saes/my-sae"), "saes/my-sae");
 * sae.labels?.get(42);
 * ```
 */
export async function withLabels(
  sae: SaeWeights,
  path: string,
  labels?: string,
): Promise<SaeWeights> {
  const from = labels ?? await findLabelsNextTo(path);
  if (from === null) return sae;
  const r = await readNeuronpediaExplanations(from, {
    neuronpediaId: sae.neuronpediaId ?? null,
    onWarning: (m) => console.error(`latentwatch sae: warning: ${m}`),
  });
  if (r.duplicates > 0) {
    console.error(
      `latentwatch sae: ${from}: ${r.duplicates} latents have several explanations; kept the first of each in file order`,
    );
  }
  return attachLabels(sae, r.labels);
}

/** ‖W_dec[i, :]‖₂ over the decoder output width, accumulated in f64. */
function decoderNorm(sae: SaeWeights, i: number): number {
  const dOut = saeDOut(sae);
  let sq = 0;
  for (let j = 0; j < dOut; j++) sq += sae.wDec[i * dOut + j] ** 2;
  return Math.sqrt(sq);
}

type Info = Record<
  string,
  string | number | boolean | null | Record<string, unknown> | SettingProvenance[]
>;

function describe(sae: SaeWeights): Info {
  const transcoder = sae.kind === "transcoder";
  const info: Info = {
    format: sae.format,
    architecture: sae.architecture,
    kind: sae.kind ?? "sae",
    d_in: sae.dIn,
    d_sae: sae.dSae,
    d_out: saeDOut(sae),
    hook: sae.hookName,
  };
  if (transcoder) info.hook_out = sae.hookNameOut ?? null;
  info.dtype = sae.dtype;
  info.normalize = sae.normalize ?? "none";
  info.b_dec_on_input = sae.applyBDecToInput;
  info.skip = sae.wSkip !== undefined;
  info.model = sae.modelName;
  if (sae.architecture === "topk") {
    info.k = sae.k ?? null;
    info.rescale_acts_by_decoder_norm = sae.rescaleActsByDecoderNorm ?? false;
  }
  if (sae.crossLayer) {
    info.cross_layer = `layer ${sae.crossLayer.layer} of ${sae.crossLayer.layers}`;
  }
  if (sae.hookHeadIndex !== undefined) info.hook_head_index = sae.hookHeadIndex;
  if (sae.neuronpediaId) info.neuronpedia = sae.neuronpediaId;
  info.labels = sae.labels?.size ?? 0;
  // Which upstream rule decided each setting the file did not state plainly.
  if (sae.provenance && sae.provenance.length > 0) info.provenance = sae.provenance;
  return info;
}

/** What `sae inspect` is asked for besides the SAE's path. */
export interface InspectOptions {
  load: LoadSaeOptions;
  /** A labels file or folder (else an `explanations/` folder next to the SAE). */
  labels?: string;
  /** One latent to describe in detail. */
  latent?: number;
  json: boolean;
  provider: ExecutionProviderSetting;
  /** The provider note in full even when `auto` found no GPU provider. */
  verbose?: boolean;
}

/**
 * The `provider_note` that `sae inspect` shows: in full when a GPU provider
 * was asked for by name or with `verbose`; otherwise (`auto`, where a
 * machine without a GPU is the ordinary case) one short line, the reasons
 * left to `--verbose`. Undefined when there is no note (the first choice
 * started).
 *
 * @example
 * ```ts
 * const report = { provider: "cpu", providerFallback: false, providerNote: "auto: webgpu could not start: …; running on cpu" } as const;
 * providerNoteShown(report, { provider: "auto", verbose: false });
 * // "auto: no GPU provider started; running on cpu (--verbose: why)"
 * ```
 */
export function providerNoteShown(
  report: ProviderReport,
  asked: { provider: ExecutionProviderSetting; verbose: boolean },
): string | undefined {
  const note = report.providerNote;
  if (note === undefined || asked.verbose || asked.provider !== "auto") return note;
  return report.provider === "cpu"
    ? "auto: no GPU provider started; running on cpu (--verbose: why)"
    : `auto: running on ${report.provider}, an earlier GPU provider did not start (--verbose: why)`;
}

/** `latentwatch sae inspect <path>`: prints the SAE's description (or one latent's); returns the exit code. */
export async function inspect(path: string, opts: InspectOptions): Promise<number> {
  const { load, labels, latent, json, provider } = opts;
  const sae = await withLabels(await loadSae(path, load), path, labels);
  const info = describe(sae);
  if (latent !== undefined) {
    if (latent >= sae.dSae) {
      throw new CliInputError(
        `--latent ${latent}: expected an index below d_sae = ${sae.dSae} (0 … ${sae.dSae - 1})`,
      );
    }
    info.latent = {
      index: latent,
      label: sae.labels?.get(latent) ?? null,
      decoder_norm: Number(decoderNorm(sae, latent).toPrecision(9)),
    };
  }
  const where = await providerOf(sae, provider, load.onProgress);
  info.provider = where.provider;
  const note = providerNoteShown(where, { provider, verbose: opts.verbose ?? false });
  if (note) info.provider_note = note;
  if (info.provenance !== undefined) {
    // the rules come after the settings they explain
    const rules = info.provenance;
    delete info.provenance;
    info.provenance = rules;
  }
  if (info.latent !== undefined) {
    // the latent's block stays last
    const block = info.latent;
    delete info.latent;
    info.latent = block;
  }
  if (json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  let text = "";
  for (const [key, value] of Object.entries(info)) {
    if (key === "provenance" && Array.isArray(value)) {
      text += "provenance:\n";
      for (const p of value) text += `  ${p.setting}=${p.value ?? "null"} ${p.rule}\n`;
    } else if (
      key === "latent" && value !== null && typeof value === "object" && !Array.isArray(value)
    ) {
      text += `latent: ${value.index}\n`;
      text += `  label: ${value.label ?? "(none)"}\n`;
      text += `  decoder_norm: ${value.decoder_norm}\n`;
    } else {
      text += `${key}: ${value ?? "unknown"}\n`;
    }
  }
  await writeAll(new TextEncoder().encode(text));
  return 0;
}
