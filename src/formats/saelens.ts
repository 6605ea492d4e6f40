/**
 * SAELens SAE folders: `cfg.json` + `sae_weights.safetensors` (see
 * docs reference sae-formats.md §1). Reads the v6 config (model keys under
 * `metadata`) and the older flat config, converting the latter the way
 * SAELens's `handle_pre_6_0_config` does, and writes the upstream layout.
 *
 * @module
 */

import { join } from "node:path";
import { bf16ToF32, type Dtype, f16ToF32, f32ToBf16, f32ToF16, fromF32 } from "../core/dtype.ts";
import type { SaeArchitecture, SaeWeights, WeightDtype } from "../core/sae.ts";
import {
  readSafetensors,
  type SafetensorsDtype,
  type SafetensorsTensor,
  tensorToF32,
  writeSafetensors,
} from "./safetensors.ts";

/** An SAE folder or config that latentwatch cannot load. */
export class SaeFormatError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SaeFormatError";
  }
}

/** File names inside a SAELens folder (sae_lens/constants.py). */
export const SAELENS_CFG = "cfg.json";
export const SAELENS_WEIGHTS = "sae_weights.safetensors";

const ARCHITECTURES: readonly SaeArchitecture[] = ["standard", "jumprelu", "topk"];

/** torch dtype names (with or without `torch.`) → the dtype SAELens computes in. */
const CFG_DTYPES: Record<string, WeightDtype> = {
  float32: "float32",
  float: "float32",
  // latentwatch computes in f32; a float64 SAE is rounded once at load.
  float64: "float32",
  double: "float32",
  float16: "float16",
  half: "float16",
  bfloat16: "bfloat16",
};

const DISK_DTYPE: Record<WeightDtype, SafetensorsDtype> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
};

const CORE_DTYPE: Record<WeightDtype, Dtype> = { float32: "f32", float16: "f16", bfloat16: "bf16" };

/** The inference-relevant part of a SAELens config, after legacy conversion. */
export interface SaeLensConfig {
  architecture: SaeArchitecture;
  dIn: number;
  dSae: number;
  dtype: WeightDtype;
  applyBDecToInput: boolean;
  k?: number;
  rescaleActsByDecoderNorm: boolean;
  hookName: string | null;
  modelName: string | null;
  /** True when the file used the pre-6.0 flat layout. */
  legacy: boolean;
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** SAELens treats a missing version or one below 6.0.0-rc.0 as the legacy layout. */
function isLegacyVersion(version: unknown): boolean {
  if (typeof version !== "string") return true;
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?/.exec(version);
  if (!m) return true;
  const major = Number(m[1]);
  if (major !== 6 || m[2] !== "0" || m[3] !== "0" || m[4] === undefined) return major < 6;
  // 6.0.0 pre-releases: only rc.N and later count as 6.x.
  return !m[4].startsWith("rc");
}

/**
 * Interpret a parsed `cfg.json` (v6 or legacy flat layout).
 *
 * @param raw the parsed JSON
 * @param source the config path, used in error messages
 * @throws {SaeFormatError} on a missing or invalid key, or an unsupported option
 *
 * @example
 * ```ts
 * const cfg = parseSaeLensConfig(JSON.parse(await Deno.readTextFile("sae/cfg.json")), "sae/cfg.json");
 * cfg.architecture; // "jumprelu"
 * ```
 */
export function parseSaeLensConfig(raw: unknown, source: string): SaeLensConfig {
  if (!isRecord(raw)) {
    throw new SaeFormatError(`${source}: expected a JSON object, found ${JSON.stringify(raw)}`);
  }
  const metadata = isRecord(raw.metadata) ? raw.metadata : {};
  const legacy = isLegacyVersion(raw.sae_lens_version ?? metadata.sae_lens_version);
  // Legacy files keep model keys at the top level; v6 moves them to metadata.
  const meta = (key: string): unknown => metadata[key] ?? raw[key];
  const bad = (key: string, expected: string, found: unknown): never => {
    throw new SaeFormatError(
      `${source}: key '${key}': expected ${expected}, found ${
        found === undefined ? "nothing (missing)" : JSON.stringify(found)
      }`,
    );
  };
  const posInt = (key: string, v: unknown): number =>
    typeof v === "number" && Number.isSafeInteger(v) && v > 0
      ? v
      : bad(key, "a positive integer", v);

  const dIn = posInt("d_in", raw.d_in);
  const dSae = posInt("d_sae", raw.d_sae);

  let architecture: unknown = raw.architecture;
  let k: unknown = raw.k;
  if (legacy) {
    architecture ??= "standard";
    const activationFn = raw.activation_fn ?? raw.activation_fn_str;
    if (activationFn === "topk") {
      architecture = "topk";
      const kwargs = isRecord(raw.activation_fn_kwargs) ? raw.activation_fn_kwargs : {};
      k = kwargs.k;
    } else if (activationFn !== undefined && activationFn !== null && activationFn !== "relu") {
      bad(
        raw.activation_fn !== undefined ? "activation_fn" : "activation_fn_str",
        "'relu' or 'topk'",
        activationFn,
      );
    }
  }
  if (
    typeof architecture !== "string" || !ARCHITECTURES.includes(architecture as SaeArchitecture)
  ) {
    bad("architecture", `one of ${ARCHITECTURES.map((a) => `'${a}'`).join(", ")}`, architecture);
  }
  const arch = architecture as SaeArchitecture;

  const dtypeRaw = raw.dtype ?? "float32";
  const dtypeName = typeof dtypeRaw === "string" ? dtypeRaw.replace(/^torch\./, "") : "";
  if (!Object.hasOwn(CFG_DTYPES, dtypeName)) {
    bad("dtype", "float32, float16, bfloat16 or float64 (optionally 'torch.'-prefixed)", dtypeRaw);
  }

  let normalize: unknown = raw.normalize_activations ?? "none";
  if (legacy && typeof normalize === "boolean") {
    normalize = normalize ? "expected_average_only_in" : "none";
  }
  if (normalize !== "none") {
    throw new SaeFormatError(
      `${source}: key 'normalize_activations': ${
        JSON.stringify(normalize)
      } is not supported yet (only "none"); fold the normalisation into the weights first`,
    );
  }
  const reshape = raw.reshape_activations ?? "none";
  // hook_z input arrives flattened head-major ([n_heads * d_head]), which is
  // exactly what the reshape produces, so both values encode the same way.
  if (reshape !== "none" && reshape !== "hook_z") {
    bad("reshape_activations", "'none' or 'hook_z'", reshape);
  }

  const applyBDec = raw.apply_b_dec_to_input ?? true;
  if (typeof applyBDec !== "boolean") bad("apply_b_dec_to_input", "a boolean", applyBDec);
  const rescale = raw.rescale_acts_by_decoder_norm ?? false;
  if (typeof rescale !== "boolean") bad("rescale_acts_by_decoder_norm", "a boolean", rescale);

  const cfg: SaeLensConfig = {
    architecture: arch,
    dIn,
    dSae,
    dtype: CFG_DTYPES[dtypeName],
    applyBDecToInput: applyBDec as boolean,
    rescaleActsByDecoderNorm: arch === "topk" && (rescale as boolean),
    hookName: stringOrNull(meta("hook_name") ?? meta("hook_point")),
    modelName: stringOrNull(meta("model_name")),
    legacy,
  };
  if (arch === "topk") {
    const kv = posInt(legacy ? "activation_fn_kwargs.k" : "k", k);
    if (kv > dSae) bad(legacy ? "activation_fn_kwargs.k" : "k", `at most d_sae = ${dSae}`, kv);
    cfg.k = kv;
  }
  return cfg;
}

function stringOrNull(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

/** Round f32 values to what a tensor cast to `dtype` holds (a no-op for float32). */
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
 * Load a SAELens SAE folder (`cfg.json` + `sae_weights.safetensors`) as f32
 * weights. f16/bf16 tensors are widened exactly; tensors stored wider than
 * the cfg dtype are rounded to it, as SAELens casts every tensor to
 * `cfg.dtype` at load.
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
export async function loadSaeLens(dir: string): Promise<SaeWeights> {
  dir = saeLensFolder(dir);
  const cfgPath = join(dir, SAELENS_CFG);
  const weightsPath = join(dir, SAELENS_WEIGHTS);
  let cfgText: string;
  try {
    cfgText = await Deno.readTextFile(cfgPath);
  } catch (e) {
    throw new SaeFormatError(
      `${cfgPath}: cannot read the SAELens config: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(cfgText);
  } catch (e) {
    throw new SaeFormatError(`${cfgPath}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const cfg = parseSaeLensConfig(raw, cfgPath);

  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(weightsPath);
  } catch (e) {
    throw new SaeFormatError(
      `${weightsPath}: cannot read the SAE weights: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  let file;
  try {
    file = readSafetensors(bytes, weightsPath);
  } catch (e) {
    throw new SaeFormatError((e as Error).message, { cause: e });
  }

  const { dIn, dSae } = cfg;
  const tensor = (name: string, shape: number[], dims: string): Float32Array => {
    const t: SafetensorsTensor | undefined = file.tensors.get(name);
    if (!t) {
      const hint = name === "threshold" && file.tensors.has("log_threshold")
        ? " (found 'log_threshold': this is a training checkpoint; SAELens saves threshold = exp(log_threshold) for inference)"
        : "";
      throw new SaeFormatError(
        `${weightsPath}: missing tensor '${name}', expected shape ${dims} = [${shape}] for a ${cfg.architecture} SAE; found tensors ${
          JSON.stringify([...file.tensors.keys()])
        }${hint}`,
      );
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new SaeFormatError(
        `${weightsPath}: tensor '${name}' has shape [${t.shape}], expected ${dims} = [${shape}] from ${cfgPath}`,
      );
    }
    if (t.dtype === "I32" || t.dtype === "I64") {
      throw new SaeFormatError(
        `${weightsPath}: tensor '${name}' has dtype ${t.dtype}, expected a float dtype (F32, F16, BF16 or F64)`,
      );
    }
    let values = tensorToF32(t);
    if (t.dtype !== DISK_DTYPE[cfg.dtype]) {
      // Copy before rounding: an F32 tensor is a view into the file bytes.
      values = roundTo(values.slice(), cfg.dtype);
    }
    return values;
  };

  const sae: SaeWeights = {
    format: "saelens",
    architecture: cfg.architecture,
    dIn,
    dSae,
    hookName: cfg.hookName,
    modelName: cfg.modelName,
    dtype: cfg.dtype,
    applyBDecToInput: cfg.applyBDecToInput,
    wEnc: tensor("W_enc", [dIn, dSae], "[d_in, d_sae]"),
    bEnc: tensor("b_enc", [dSae], "[d_sae]"),
    wDec: tensor("W_dec", [dSae, dIn], "[d_sae, d_in]"),
    bDec: tensor("b_dec", [dIn], "[d_in]"),
    source: dir,
  };
  if (cfg.architecture === "jumprelu") sae.threshold = tensor("threshold", [dSae], "[d_sae]");
  if (cfg.architecture === "topk") {
    sae.k = cfg.k;
    sae.rescaleActsByDecoderNorm = cfg.rescaleActsByDecoderNorm;
  }
  if (cfg.legacy && file.tensors.has("scaling_factor")) {
    // Legacy decode was (f * scaling_factor) @ W_dec; folding it into the
    // decoder rows keeps decode identical and leaves encode untouched.
    const s = tensor("scaling_factor", [dSae], "[d_sae]");
    if (s.some((v) => v !== 1)) {
      const wDec = sae.wDec.slice();
      for (let i = 0; i < dSae; i++) {
        for (let j = 0; j < dIn; j++) wDec[i * dIn + j] *= s[i];
      }
      sae.wDec = wDec;
    }
  }
  return sae;
}

/** Options for {@linkcode writeSaeLensFolder}. */
export interface WriteSaeLensOptions {
  /** Tensor and cfg dtype; defaults to `weights.dtype`. Values are rounded to it. */
  dtype?: WeightDtype;
  /** Write the pre-6.0 flat config (`hook_point`, `activation_fn_str`, ...) instead of v6. */
  legacyConfig?: boolean;
}

/**
 * Write `weights` as a SAELens folder: `cfg.json` and `sae_weights.safetensors`
 * with `W_enc [d_in, d_sae]`, `b_enc`, `W_dec [d_sae, d_in]`, `b_dec` and, for
 * JumpReLU, `threshold`. Creates `dir` if needed.
 *
 * @throws {SaeFormatError} when the legacy layout cannot express the weights
 *
 * @example
 * ```ts
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
  const cfg = opts.legacyConfig ? legacyConfig(weights, dtype) : v6Config(weights, dtype);
  const t = (values: Float32Array, shape: number[]): SafetensorsTensor => ({
    dtype: DISK_DTYPE[dtype],
    shape,
    data: fromF32(values, CORE_DTYPE[dtype]),
  });
  const { dIn, dSae } = weights;
  // Upstream save_file orders tensors by dtype, then name (byte order).
  const tensors: Record<string, SafetensorsTensor> = {
    W_dec: t(weights.wDec, [dSae, dIn]),
    W_enc: t(weights.wEnc, [dIn, dSae]),
    b_dec: t(weights.bDec, [dIn]),
    b_enc: t(weights.bEnc, [dSae]),
  };
  if (weights.architecture === "jumprelu") {
    if (!weights.threshold) throw new SaeFormatError(`jumprelu weights have no threshold`);
    tensors.threshold = t(weights.threshold, [dSae]);
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, SAELENS_CFG), JSON.stringify(cfg, null, 2) + "\n");
  await Deno.writeFile(join(dir, SAELENS_WEIGHTS), writeSafetensors(tensors, { format: "pt" }));
}

function v6Config(w: SaeWeights, dtype: WeightDtype): Json {
  const cfg: Json = {
    architecture: w.architecture,
    d_in: w.dIn,
    d_sae: w.dSae,
    dtype,
    device: "cpu",
    apply_b_dec_to_input: w.applyBDecToInput,
    normalize_activations: "none",
    reshape_activations: "none",
  };
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
