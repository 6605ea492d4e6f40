/**
 * SAELens SAE folders: `cfg.json` + `sae_weights.safetensors` (see
 * docs reference sae-formats.md §1), loaded as f32 weights. The config rules
 * are in `saelens_config.ts` (pre-6.0 configs in `saelens_legacy.ts`), the
 * writer of the upstream layout in `saelens_writer.ts`.
 *
 * @module
 */

import { join } from "node:path";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../core/dtype.ts";
import type { SaeWeights, WeightDtype } from "../core/sae.ts";
import { badKey, readJsonFile, SaeFormatError } from "./errors.ts";
import { DISK_DTYPE, isRecord, parseSaeLensConfig, type SaeLensConfig } from "./saelens_config.ts";
import {
  openSafetensorsSource,
  type SaeLoadOptions,
  type TensorExpectation,
  WeightReader,
} from "./weights.ts";
/** File names inside a SAELens folder (sae_lens/constants.py). */
export const SAELENS_CFG = "cfg.json";
export const SAELENS_WEIGHTS = "sae_weights.safetensors";
/** Written next to training checkpoints: `{"scaling_factor": s}` (training/activation_scaler.py). */
export const SAELENS_ACTIVATION_SCALER = "activation_scaler.json";

/** Round f32 values to what a tensor cast to `dtype` holds (in place; a no-op for float32). */
function roundTo(values: Float32Array<ArrayBuffer>, dtype: WeightDtype): Float32Array {
  if (dtype === "float16") return f16ToF32(f32ToF16(values), values);
  if (dtype === "bfloat16") return bf16ToF32(f32ToBf16(values), values);
  return values;
}

/** Resolve a path given as the folder, its cfg.json or its weights file to the folder. */
export function saeLensFolder(path: string): string {
  return /(^|[\\/])(cfg\.json|sae_weights\.safetensors)$/.test(path)
    ? path.replace(/[\\/]?[^\\/]+$/, "") || "."
    : path;
}

/**
 * Find the `expected_average_only_in` scaling factor: the explicit option,
 * else `activation_scaler.json` in the folder, else the cfg's
 * `norm_scaling_factor`.
 */
async function findScalingFactor(
  dir: string,
  cfg: SaeLensConfig,
  cfgPath: string,
  explicit: number | undefined,
): Promise<number> {
  if (explicit !== undefined) {
    if (!(explicit > 0) || !Number.isFinite(explicit)) {
      throw new SaeFormatError(
        `${dir}: the scalingFactor option must be a positive finite number, found ${explicit}`,
      );
    }
    return explicit;
  }
  const scalerPath = join(dir, SAELENS_ACTIVATION_SCALER);
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(scalerPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new SaeFormatError(`${scalerPath}: cannot read: ${(e as Error).message}`, { cause: e });
    }
  }
  if (text !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new SaeFormatError(`${scalerPath}: not valid JSON: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const s = isRecord(parsed) ? parsed.scaling_factor : undefined;
    // A scaler saved before any statistics were gathered holds null: no factor.
    if (s !== null && s !== undefined) {
      if (typeof s !== "number" || !(s > 0) || !Number.isFinite(s)) {
        badKey(scalerPath, "scaling_factor", "a positive number", s);
      }
      return s as number;
    }
  }
  if (cfg.normScalingFactor !== undefined) return cfg.normScalingFactor;
  throw new SaeFormatError(
    `${cfgPath}: normalize_activations is "expected_average_only_in", which needs the norm scaling factor s = sqrt(d_in)/E‖x‖ folded into the weights, and none was found. ` +
      `SAELens does not keep it in cfg.json: training checkpoints have it in ${SAELENS_ACTIVATION_SCALER} ({"scaling_factor": s}) next to cfg.json, and pretrained releases list it as norm_scaling_factor per SAE id in sae_lens/pretrained_saes.yaml. ` +
      `Looked for: the scalingFactor option (--scaling-factor), ${scalerPath}, and a 'norm_scaling_factor' key in ${cfgPath}. Pass the factor, or add {"scaling_factor": s} as ${scalerPath}.`,
  );
}

/**
 * Load a SAELens SAE folder (`cfg.json` + `sae_weights.safetensors`) as f32
 * weights: standard, gated, jumprelu (also BatchTopK/Matryoshka as saved),
 * topk, and the transcoder architectures. f16/bf16 tensors are widened
 * exactly, tensor by tensor from disk; tensors stored wider than the cfg
 * dtype are rounded to it, as SAELens casts every tensor to `cfg.dtype`.
 * `expected_average_only_in` folds the scaling factor into the weights like
 * SAELens's `fold_activation_norm_scaling_factor`.
 *
 * @param dir the folder (or the path of its cfg.json or weights file)
 * @throws {SaeFormatError} naming the file, key or tensor, the expected and the found value
 *
 * @example
 * ```ts
 * const sae = await loadSaeLens("saes/gpt2-small-res-jb/blocks.8.hook_resid_pre");
 * console.log(sae.architecture, sae.dIn, sae.dSae);
 * ```
 */
export async function loadSaeLens(dir: string, opts: SaeLoadOptions = {}): Promise<SaeWeights> {
  dir = saeLensFolder(dir);
  const cfgPath = join(dir, SAELENS_CFG);
  const weightsPath = join(dir, SAELENS_WEIGHTS);
  const cfg = parseSaeLensConfig(await readJsonFile(cfgPath, "SAELens config"), cfgPath);
  // Resolve the scaling factor before reading gigabytes of weights.
  const scale = cfg.normalize === "expected_average_only_in"
    ? await findScalingFactor(dir, cfg, cfgPath, opts.scalingFactor)
    : null;

  const source = await openSafetensorsSource(weightsPath, "SAE weights");
  const { dIn, dSae, dOut } = cfg;
  const gated = cfg.architecture === "gated";
  const wanted = [
    "W_enc",
    "W_dec",
    "b_dec",
    ...(gated ? ["b_gate", "b_mag", "r_mag"] : ["b_enc"]),
    ...(cfg.architecture === "jumprelu" ? ["threshold"] : []),
    ...(cfg.skip ? ["W_skip"] : []),
    "scaling_factor",
  ];
  const r = new WeightReader(source, {
    what: `a ${cfg.cfgArchitecture} SAE`,
    configPath: cfgPath,
    wanted,
    onProgress: opts.onProgress,
  });
  // hook_z SAEs may be stored with the head axes unflattened; the data order is the same.
  const headAxes = (shape: number[], at: 0 | 1, rank: number, d: number) =>
    cfg.reshapeActivations === "hook_z" && shape.length === rank &&
    shape[at] * shape[at + 1] === d;
  const read = async (name: string, exp: TensorExpectation, hint = "") => {
    const values = await r.f32(name, exp, hint);
    // SAELens casts every tensor to cfg.dtype at load; a wider file is rounded here.
    return r.dtype(name) !== DISK_DTYPE[cfg.dtype] ? roundTo(values, cfg.dtype) : values;
  };
  const vec = (name: string, n: number, dims: string, hint = "") =>
    read(name, { shape: [n], dims }, hint);

  try {
    const wEnc = await read("W_enc", {
      shape: [dIn, dSae],
      dims: "[d_in, d_sae]",
      accept: (s) => headAxes(s, 0, 3, dIn) && s[2] === dSae,
    });
    const wDec = await read("W_dec", {
      shape: [dSae, dOut],
      dims: cfg.kind === "transcoder"
        ? `[d_sae, d_out]${
          cfg.provenance.some((p) => p.setting === "d_out")
            ? " (the cfg has no 'd_out' key; SAELens's TranscoderConfig default is 768)"
            : ""
        }`
        : "[d_sae, d_in]",
      accept: (s) => cfg.kind === "sae" && s[0] === dSae && headAxes(s, 1, 3, dIn),
    });
    const bDec = await vec("b_dec", dOut, cfg.kind === "transcoder" ? "[d_out]" : "[d_in]");
    const sae: SaeWeights = {
      format: "saelens",
      architecture: cfg.architecture,
      dIn,
      dSae,
      hookName: cfg.hookName,
      modelName: cfg.modelName,
      dtype: cfg.dtype,
      applyBDecToInput: cfg.applyBDecToInput,
      wEnc,
      bEnc: gated ? new Float32Array(dSae) : await vec("b_enc", dSae, "[d_sae]"),
      wDec,
      bDec,
      source: dir,
      neuronpediaId: cfg.neuronpediaId,
    };
    if (gated) {
      sae.gated = {
        bGate: await vec("b_gate", dSae, "[d_sae]"),
        rMag: await vec("r_mag", dSae, "[d_sae]"),
        bMag: await vec("b_mag", dSae, "[d_sae]"),
      };
    }
    if (cfg.architecture === "jumprelu") {
      sae.threshold = await vec(
        "threshold",
        dSae,
        "[d_sae]",
        r.has("log_threshold")
          ? " (found 'log_threshold': this is a training checkpoint; SAELens saves threshold = exp(log_threshold) for inference)"
          : "",
      );
    }
    if (cfg.architecture === "topk") {
      sae.k = cfg.k;
      sae.rescaleActsByDecoderNorm = cfg.rescaleActsByDecoderNorm;
    }
    if (cfg.kind === "transcoder") {
      sae.kind = "transcoder";
      sae.dOut = dOut;
      sae.hookNameOut = cfg.hookNameOut;
    }
    if (cfg.skip) {
      // SkipTranscoder: y += x_raw @ W_skip^T with W_skip [d_out, d_in]; the runtime adds
      // x_raw @ wSkip with wSkip [d_in, d_out], so transpose once here.
      sae.wSkip = await read("W_skip", {
        shape: [dOut, dIn],
        dims: "[d_out, d_in]",
        layout: "transposed",
      });
    }
    if (cfg.normalize === "constant_norm_rescale" || cfg.normalize === "layer_norm") {
      sae.normalize = cfg.normalize;
    }
    if (scale !== null) foldScalingFactor(sae, scale);
    const provenance = [...cfg.provenance];
    if (r.has("scaling_factor")) {
      // read_sae_components_from_disk (any config version): a tensor allclose to
      // ones is dropped; otherwise finetuning_scaling_factor must be true.
      const s = await vec("scaling_factor", dSae, "[d_sae]");
      if (s.every((v) => Math.abs(v - 1) <= 1e-8 + 1e-5)) {
        provenance.push({
          setting: "scaling_factor",
          value: "ignored",
          rule: "tensor allclose to ones: dropped (SAELens read_sae_components_from_disk)",
        });
      } else if (!cfg.finetuningScalingFactor) {
        throw new SaeFormatError(
          `${cfgPath}: key 'finetuning_scaling_factor': expected true because ${weightsPath} holds a 'scaling_factor' tensor that is not all ones, found ${
            JSON.stringify(cfg.finetuningScalingFactor)
          } (SAELens raises "Scaling factor is present but finetuning_scaling_factor is False.")`,
        );
      } else {
        // SAELens ≤ 5 decoded (f * scaling_factor) @ W_dec; folding it into the
        // decoder rows keeps decode identical and leaves encode untouched.
        for (let i = 0; i < dSae; i++) {
          for (let j = 0; j < dOut; j++) sae.wDec[i * dOut + j] *= s[i];
        }
        provenance.push({
          setting: "scaling_factor",
          value: "folded into W_dec rows",
          rule:
            "finetuning_scaling_factor true: decode multiplies latents by scaling_factor (SAELens ≤ 5 rule; SAELens 6 refuses the tensor)",
        });
      }
    }
    if (scale !== null) {
      provenance.push({
        setting: "normalize_activations",
        value: `expected_average_only_in folded (s = ${scale})`,
        rule: "W_enc·s, W_dec/s, b_dec/s (SAELens fold_activation_norm_scaling_factor)",
      });
    }
    if (cfg.hookHeadIndex !== undefined) sae.hookHeadIndex = cfg.hookHeadIndex;
    if (provenance.length > 0) sae.provenance = provenance;
    return sae;
  } finally {
    source.close();
  }
}

/**
 * SAELens `fold_activation_norm_scaling_factor(s)`: `W_enc *= s`,
 * `W_dec /= s`, `b_dec /= s` (in place), after which the SAE takes raw
 * activations (`normalize_activations` becomes "none").
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * foldScalingFactor(sae, 0.25);
 * ```
 */
export function foldScalingFactor(sae: SaeWeights, s: number): void {
  // As torch does on f32 tensors: the scalar becomes f32, then one rounded
  // multiply or divide per element (a divide, not a multiply by 1/s).
  const sf = Math.fround(s);
  for (let i = 0; i < sae.wEnc.length; i++) sae.wEnc[i] *= sf;
  for (let i = 0; i < sae.wDec.length; i++) sae.wDec[i] /= sf;
  for (let i = 0; i < sae.bDec.length; i++) sae.bDec[i] /= sf;
  if (sae.dtype !== "float32") {
    // Tensors in a narrower cfg dtype hold the rounded result.
    for (const a of [sae.wEnc, sae.wDec, sae.bDec]) {
      roundTo(a as Float32Array<ArrayBuffer>, sae.dtype);
    }
  }
}
