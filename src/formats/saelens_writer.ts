/**
 * Writing SAE weights as a SAELens folder in the upstream layout (v6 or the
 * pre-6.0 flat config), for fixtures, demos and `sae convert`.
 *
 * @module
 */
import { join } from "node:path";
import { fromF32 } from "../core/dtype.ts";
import type { SaeWeights, WeightDtype } from "../core/sae.ts";
import { SaeFormatError } from "./errors.ts";
import { CORE_DTYPE, DISK_DTYPE } from "./saelens_config.ts";
import { SAELENS_CFG, SAELENS_WEIGHTS } from "./saelens.ts";
import { type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";

type Json = Record<string, unknown>;
/** Options for {@linkcode writeSaeLensFolder}. */
export interface WriteSaeLensOptions {
  /** Tensor and cfg dtype; defaults to `weights.dtype`. Values are rounded to it. */
  dtype?: WeightDtype;
  /** Write the pre-6.0 flat config (`hook_point`, `activation_fn_str`, ...) instead of v6. */
  legacyConfig?: boolean;
}

/**
 * Write `weights` as a SAELens folder: `cfg.json` and `sae_weights.safetensors`
 * in the upstream layout: `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_out]`,
 * `b_dec`; JumpReLU adds `threshold`; gated writes `b_gate`, `b_mag`, `r_mag`
 * instead of `b_enc`; skip transcoders add `W_skip [d_out, d_in]` (the
 * transpose of `wSkip`). Creates `dir` if needed.
 *
 * @throws {SaeFormatError} when the layout cannot express the weights
 *
 * @example
 * ```ts
 * import { randomSae } from "./random_sae.ts";
 * import { loadSaeLens } from "./saelens.ts";
 * await writeSaeLensFolder("/tmp/sae", randomSae({ architecture: "topk", dIn: 16, dSae: 64, k: 4, seed: 1 }));
 * const back = await loadSaeLens("/tmp/sae");
 * ```
 */
export async function writeSaeLensFolder(
  dir: string,
  weights: SaeWeights,
  opts: WriteSaeLensOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? weights.dtype;
  if (opts.legacyConfig && (weights.kind === "transcoder" || weights.gated || weights.normalize)) {
    throw new SaeFormatError(
      `the legacy SAELens config cannot express gated SAEs, transcoders or normalisation; write the v6 config`,
    );
  }
  const cfg = opts.legacyConfig ? legacyConfig(weights, dtype) : v6Config(weights, dtype);
  const t = (values: Float32Array, shape: number[]): SafetensorsTensor => ({
    dtype: DISK_DTYPE[dtype],
    shape,
    data: fromF32(values, CORE_DTYPE[dtype]),
  });
  const { dIn, dSae } = weights;
  const dOut = weights.dOut ?? dIn;
  // Upstream save_file orders tensors by dtype, then name (byte order).
  const tensors: Record<string, SafetensorsTensor> = {
    W_dec: t(weights.wDec, [dSae, dOut]),
    W_enc: t(weights.wEnc, [dIn, dSae]),
  };
  if (weights.wSkip) {
    const wSkipT = new Float32Array(dOut * dIn);
    for (let i = 0; i < dIn; i++) {
      for (let o = 0; o < dOut; o++) wSkipT[o * dIn + i] = weights.wSkip[i * dOut + o];
    }
    tensors.W_skip = t(wSkipT, [dOut, dIn]);
  }
  tensors.b_dec = t(weights.bDec, [dOut]);
  if (weights.architecture === "gated") {
    if (!weights.gated) throw new SaeFormatError(`gated weights have no gated parameters`);
    tensors.b_gate = t(weights.gated.bGate, [dSae]);
    tensors.b_mag = t(weights.gated.bMag, [dSae]);
  } else {
    tensors.b_enc = t(weights.bEnc, [dSae]);
  }
  if (weights.architecture === "gated") tensors.r_mag = t(weights.gated!.rMag, [dSae]);
  if (weights.architecture === "jumprelu") {
    if (!weights.threshold) throw new SaeFormatError(`jumprelu weights have no threshold`);
    tensors.threshold = t(weights.threshold, [dSae]);
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, SAELENS_CFG), JSON.stringify(cfg, null, 2) + "\n");
  await Deno.writeFile(join(dir, SAELENS_WEIGHTS), writeSafetensors(tensors, { format: "pt" }));
}

/** The SAELens architecture name of `w`. */
function saeLensArchitecture(w: SaeWeights): string {
  if (w.kind !== "transcoder") return w.architecture;
  if (w.architecture !== "standard" && w.architecture !== "jumprelu") {
    throw new SaeFormatError(
      `SAELens has no ${w.architecture} transcoder; expected a standard or jumprelu transcoder`,
    );
  }
  return `${w.architecture === "jumprelu" ? "jumprelu_" : ""}${w.wSkip ? "skip_" : ""}transcoder`;
}

function v6Config(w: SaeWeights, dtype: WeightDtype): Json {
  const transcoder = w.kind === "transcoder";
  if (!transcoder && w.wSkip) {
    throw new SaeFormatError(`SAELens stores skip connections only on transcoders`);
  }
  const cfg: Json = {
    architecture: saeLensArchitecture(w),
    d_in: w.dIn,
    d_sae: w.dSae,
    dtype,
    device: "cpu",
    apply_b_dec_to_input: transcoder ? false : w.applyBDecToInput,
    normalize_activations: w.normalize ?? "none",
    reshape_activations: "none",
  };
  if (transcoder) cfg.d_out = w.dOut ?? w.dIn;
  if (w.architecture === "topk") {
    cfg.k = w.k;
    cfg.rescale_acts_by_decoder_norm = w.rescaleActsByDecoderNorm ?? false;
  }
  cfg.metadata = {
    sae_lens_version: "6.18.0",
    sae_lens_training_version: "6.18.0",
    model_name: w.modelName,
    hook_name: w.hookName,
    hook_head_index: null,
    prepend_bos: true,
    ...(transcoder ? { hook_name_out: w.hookNameOut ?? null } : {}),
    ...(w.neuronpediaId ? { neuronpedia_id: w.neuronpediaId } : {}),
  };
  return cfg;
}

function legacyConfig(w: SaeWeights, dtype: WeightDtype): Json {
  if (w.rescaleActsByDecoderNorm) {
    throw new SaeFormatError(
      `the legacy SAELens config cannot express rescale_acts_by_decoder_norm; write the v6 config`,
    );
  }
  const layer = /^blocks\.(\d+)\./.exec(w.hookName ?? "");
  const cfg: Json = {
    model_name: w.modelName,
    hook_point: w.hookName,
    hook_point_layer: layer ? Number(layer[1]) : 0,
    hook_point_head_index: null,
    d_in: w.dIn,
    d_sae: w.dSae,
    dtype: `torch.${dtype}`,
    device: "cpu",
    activation_fn_str: w.architecture === "topk" ? "topk" : "relu",
    activation_fn_kwargs: w.architecture === "topk" ? { k: w.k } : {},
    apply_b_dec_to_input: w.applyBDecToInput,
    normalize_activations: false,
    finetuning_scaling_factor: false,
    context_size: 128,
    prepend_bos: true,
    sae_lens_training_version: "3.13.0",
  };
  // Pre-6 TopK SAEs were "standard" with a topk activation; "standard" is the
  // default when the key is absent, which is what such files usually look like.
  if (w.architecture === "jumprelu") cfg.architecture = "jumprelu";
  return cfg;
}
