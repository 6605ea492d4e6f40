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
import type {
  InputNormalization,
  SaeArchitecture,
  SaeKind,
  SaeWeights,
  WeightDtype,
} from "../core/sae.ts";
import {
  rearrange,
  type SafetensorsDtype,
  SafetensorsError,
  SafetensorsReader,
  type SafetensorsTensor,
  type TensorLayout,
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
/** Written next to training checkpoints: `{"scaling_factor": s}` (training/activation_scaler.py). */
export const SAELENS_ACTIVATION_SCALER = "activation_scaler.json";

/**
 * Called while weights load: `done` of `total` stored bytes read so far, and
 * what is being read (e.g. `"W_enc"`).
 */
export type LoadProgress = (done: number, total: number, phase: string) => void;

/** Options every loader accepts. */
export interface SaeLoadOptions {
  /**
   * SAELens `expected_average_only_in`: the norm scaling factor `s` to fold
   * into the weights. Overrides `activation_scaler.json` and the cfg's
   * `norm_scaling_factor`.
   */
  scalingFactor?: number;
  onProgress?: LoadProgress;
}

/** SAELens `architecture` → the runtime architecture, kind and whether `W_skip` is stored. */
const ARCHITECTURES: Readonly<
  Record<string, { architecture: SaeArchitecture; kind: SaeKind; skip: boolean }>
> = {
  standard: { architecture: "standard", kind: "sae", skip: false },
  gated: { architecture: "gated", kind: "sae", skip: false },
  jumprelu: { architecture: "jumprelu", kind: "sae", skip: false },
  topk: { architecture: "topk", kind: "sae", skip: false },
  transcoder: { architecture: "standard", kind: "transcoder", skip: false },
  skip_transcoder: { architecture: "standard", kind: "transcoder", skip: true },
  jumprelu_transcoder: { architecture: "jumprelu", kind: "transcoder", skip: false },
  jumprelu_skip_transcoder: { architecture: "jumprelu", kind: "transcoder", skip: true },
};

/** Architectures SAELens knows that need something this runtime does not do. */
const UNSUPPORTED_HINTS: Readonly<Record<string, string>> = {
  batchtopk:
    "this is a training config; SAELens saves BatchTopK SAEs for inference as 'jumprelu' with a threshold",
  matryoshka_batchtopk:
    "this is a training config; SAELens saves Matryoshka BatchTopK SAEs for inference as 'jumprelu'",
  matching_pursuit: "matching pursuit encodes greedily and is not supported",
  temporal: "temporal SAEs are not supported",
};

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
  /** The `architecture` string as written in the file (after legacy conversion). */
  cfgArchitecture: string;
  kind: SaeKind;
  /** Skip transcoders: `W_skip [d_out, d_in]` is stored. */
  skip: boolean;
  dIn: number;
  dSae: number;
  /** Transcoders: `d_out`; SAEs: `d_in`. */
  dOut: number;
  dtype: WeightDtype;
  applyBDecToInput: boolean;
  k?: number;
  rescaleActsByDecoderNorm: boolean;
  normalize: InputNormalization | "expected_average_only_in";
  /** `norm_scaling_factor` when the cfg carries one (pretrained_saes.yaml puts it there). */
  normScalingFactor?: number;
  reshapeActivations: "none" | "hook_z";
  hookName: string | null;
  hookNameOut: string | null;
  modelName: string | null;
  neuronpediaId: string | null;
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

/** `${source}: key 'k': expected …, found …` */
export function badKey(source: string, key: string, expected: string, found: unknown): never {
  throw new SaeFormatError(
    `${source}: key '${key}': expected ${expected}, found ${
      found === undefined ? "nothing (missing)" : JSON.stringify(found)
    }`,
  );
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
  const bad = (key: string, expected: string, found: unknown): never =>
    badKey(source, key, expected, found);
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
  if (typeof architecture !== "string" || !Object.hasOwn(ARCHITECTURES, architecture)) {
    const hint = typeof architecture === "string" && Object.hasOwn(UNSUPPORTED_HINTS, architecture)
      ? ` (${UNSUPPORTED_HINTS[architecture]})`
      : "";
    throw new SaeFormatError(
      `${source}: key 'architecture': expected one of ${
        Object.keys(ARCHITECTURES).map((a) => `'${a}'`).join(", ")
      }, found ${
        architecture === undefined ? "nothing (missing)" : JSON.stringify(architecture)
      }${hint}`,
    );
  }
  const { architecture: arch, kind, skip } = ARCHITECTURES[architecture];
  const transcoder = kind === "transcoder";

  const dtypeRaw = raw.dtype ?? "float32";
  const dtypeName = typeof dtypeRaw === "string" ? dtypeRaw.replace(/^torch\./, "") : "";
  if (!Object.hasOwn(CFG_DTYPES, dtypeName)) {
    bad("dtype", "float32, float16, bfloat16 or float64 (optionally 'torch.'-prefixed)", dtypeRaw);
  }

  let normalize: unknown = raw.normalize_activations ?? "none";
  if (legacy && typeof normalize === "boolean") {
    normalize = normalize ? "expected_average_only_in" : "none";
  }
  const NORMS = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];
  if (typeof normalize !== "string" || !NORMS.includes(normalize)) {
    bad("normalize_activations", NORMS.map((n) => `'${n}'`).join(", "), normalize);
  }
  let normScalingFactor: number | undefined;
  if (raw.norm_scaling_factor !== undefined && raw.norm_scaling_factor !== null) {
    const s = raw.norm_scaling_factor;
    if (typeof s !== "number" || !(s > 0) || !Number.isFinite(s)) {
      bad("norm_scaling_factor", "a positive number", s);
    }
    normScalingFactor = s as number;
  }

  const hookName = stringOrNull(meta("hook_name") ?? meta("hook_point"));
  let reshape = raw.reshape_activations ?? "none";
  // handle_pre_6_0_config: legacy hook_z SAEs reshape by hook name.
  if (legacy && raw.reshape_activations === undefined && hookName?.includes("hook_z")) {
    reshape = "hook_z";
  }
  if (reshape !== "none" && reshape !== "hook_z") {
    bad("reshape_activations", "'none' or 'hook_z'", reshape);
  }
  const headIndex = meta("hook_head_index") ?? meta("hook_point_head_index");
  if (headIndex !== undefined && headIndex !== null) {
    // SAELens would feed one head's slice of hook_z; the runtime reads whole activations.
    bad(
      "hook_head_index",
      "null (single-head SAEs are not supported; the runtime feeds the whole activation)",
      headIndex,
    );
  }

  // Transcoders never subtract b_dec; SAELens's TranscoderConfig raises if asked to.
  const applyBDec = raw.apply_b_dec_to_input ?? !transcoder;
  if (typeof applyBDec !== "boolean") bad("apply_b_dec_to_input", "a boolean", applyBDec);
  if (transcoder && applyBDec) {
    bad(
      "apply_b_dec_to_input",
      `false for a ${architecture} (SAELens raises: transcoders never subtract b_dec from their input)`,
      applyBDec,
    );
  }
  const rescale = raw.rescale_acts_by_decoder_norm ?? false;
  if (typeof rescale !== "boolean") bad("rescale_acts_by_decoder_norm", "a boolean", rescale);

  const cfg: SaeLensConfig = {
    architecture: arch,
    cfgArchitecture: architecture,
    kind,
    skip,
    dIn,
    dSae,
    dOut: transcoder ? posInt("d_out", raw.d_out) : dIn,
    dtype: CFG_DTYPES[dtypeName],
    applyBDecToInput: applyBDec as boolean,
    rescaleActsByDecoderNorm: arch === "topk" && (rescale as boolean),
    normalize: normalize as SaeLensConfig["normalize"],
    reshapeActivations: reshape as "none" | "hook_z",
    hookName,
    hookNameOut: transcoder ? stringOrNull(meta("hook_name_out")) : null,
    modelName: stringOrNull(meta("model_name")),
    neuronpediaId: stringOrNull(meta("neuronpedia_id")),
    legacy,
  };
  if (normScalingFactor !== undefined) cfg.normScalingFactor = normScalingFactor;
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

/** Read and parse a JSON file, naming it in any error. */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new SaeFormatError(`${path}: cannot read the ${what}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SaeFormatError(`${path}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/** A tensor's stored element type and shape, before any conversion. */
export interface TensorInfo {
  dtype: string;
  shape: number[];
  bytes: number;
}

/** A named set of tensors: a safetensors file read lazily, or arrays already in memory (npz). */
export interface TensorSource {
  readonly path: string;
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /** A fresh f32 array the caller owns, laid out by `layout`. */
  read(
    name: string,
    layout: TensorLayout,
    onChunk: (bytes: number) => void,
  ): Promise<Float32Array<ArrayBuffer>>;
  close(): void;
}

/**
 * Open a safetensors weights file as a {@linkcode TensorSource} that reads one
 * tensor at a time from disk (memory-lean).
 *
 * @throws {SaeFormatError} when the file is missing, truncated or malformed
 */
export async function openSafetensorsSource(path: string, what: string): Promise<TensorSource> {
  let reader: SafetensorsReader;
  try {
    reader = await SafetensorsReader.open(path);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SaeFormatError(e.message, { cause: e });
    throw new SaeFormatError(`${path}: cannot read the ${what}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return {
    path,
    names: () => [...reader.entries.keys()],
    info: (name) => {
      const e = reader.entries.get(name);
      return e && { dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin };
    },
    read: async (name, layout, onChunk) => {
      try {
        return await reader.readF32(name, layout, onChunk);
      } catch (e) {
        if (e instanceof SafetensorsError) throw new SaeFormatError(e.message, { cause: e });
        throw e;
      }
    },
    close: () => reader.close(),
  };
}

/**
 * Arrays already decoded to f32 (e.g. from an `.npz`) as a {@linkcode TensorSource}.
 * Each array is handed out once (the caller owns it), so reading a name twice fails.
 */
export function memoryTensorSource(
  path: string,
  arrays: Map<string, { shape: number[]; data: Float32Array; dtype: string }>,
): TensorSource {
  return {
    path,
    names: () => [...arrays.keys()],
    info: (name) => {
      const a = arrays.get(name);
      return a && { dtype: a.dtype, shape: a.shape, bytes: a.data.byteLength };
    },
    read: (name, layout, onChunk) => {
      const a = arrays.get(name);
      if (!a) return Promise.reject(new SaeFormatError(`${path}: no array '${name}'`));
      const out = rearrange(a.data, a.shape, layout);
      onChunk(a.data.byteLength);
      // A fresh, exactly sized, ArrayBuffer-backed copy only when the layout did not make one.
      return Promise.resolve(
        out === a.data || !(out.buffer instanceof ArrayBuffer)
          ? new Float32Array(out)
          : out as Float32Array<ArrayBuffer>,
      );
    },
    close: () => {},
  };
}

/** What a loader expects of one stored tensor. */
export interface TensorExpectation {
  /** Shape as stored upstream, e.g. `[d_out, d_in]` values. */
  shape: number[];
  /** The same shape in words, e.g. `"[d_out, d_in]"`, for messages. */
  dims: string;
  /** How to place it into the runtime layout. */
  layout?: TensorLayout;
  /** Also accept this stored shape (same element order), e.g. hook_z `[n_heads, d_head, d_sae]`. */
  accept?: (shape: number[]) => boolean;
}

/**
 * Reads the tensors of one SAE from a {@linkcode TensorSource} with checks:
 * a missing tensor, a shape that disagrees with the config, or an integer
 * dtype fails naming the file, the tensor, what was expected and what was
 * found. Reports progress over the tensors named in `wanted`.
 *
 * @example
 * ```ts
 * const w = new WeightReader(source, { what: "a jumprelu SAE", configPath: "cfg.json", wanted: ["W_enc"] });
 * const wEnc = await w.f32("W_enc", { shape: [dIn, dSae], dims: "[d_in, d_sae]" });
 * ```
 */
export class WeightReader {
  readonly source: TensorSource;
  #what: string;
  #configPath: string;
  #onProgress?: LoadProgress;
  #done = 0;
  #total: number;

  constructor(
    source: TensorSource,
    opts: { what: string; configPath: string; wanted: string[]; onProgress?: LoadProgress },
  ) {
    this.source = source;
    this.#what = opts.what;
    this.#configPath = opts.configPath;
    this.#onProgress = opts.onProgress;
    this.#total = opts.wanted.reduce((n, name) => n + (source.info(name)?.bytes ?? 0), 0);
  }

  has(name: string): boolean {
    return this.source.info(name) !== undefined;
  }

  /** The stored shape of `name`, or undefined. */
  shape(name: string): number[] | undefined {
    return this.source.info(name)?.shape;
  }

  /** The stored dtype of `name`, or undefined. */
  dtype(name: string): string | undefined {
    return this.source.info(name)?.dtype;
  }

  /** Fail naming the missing tensor and what the file does hold. */
  missing(name: string, exp: TensorExpectation, hint = ""): never {
    throw new SaeFormatError(
      `${this.source.path}: missing tensor '${name}', expected shape ${exp.dims} = [${exp.shape}] for ${this.#what}; found tensors ${
        JSON.stringify(this.source.names())
      }${hint}`,
    );
  }

  /** Check `name` against `exp` without reading it. */
  check(name: string, exp: TensorExpectation, hint = ""): TensorInfo {
    const info = this.source.info(name);
    if (!info) this.missing(name, exp, hint);
    const same = info.shape.length === exp.shape.length &&
      info.shape.every((d, i) => d === exp.shape[i]);
    if (!same && !(exp.accept?.(info.shape) ?? false)) {
      throw new SaeFormatError(
        `${this.source.path}: tensor '${name}' has shape [${info.shape}], expected ${exp.dims} = [${exp.shape}] from ${this.#configPath}`,
      );
    }
    if (!["F32", "F16", "BF16", "F64", "f32", "f16", "f64"].includes(info.dtype)) {
      throw new SaeFormatError(
        `${this.source.path}: tensor '${name}' has dtype ${info.dtype}, expected a float dtype (F32, F16, BF16 or F64)`,
      );
    }
    return info;
  }

  /** Check and read `name` as f32 in the runtime layout. */
  async f32(name: string, exp: TensorExpectation, hint = ""): Promise<Float32Array<ArrayBuffer>> {
    const info = this.check(name, exp, hint);
    // An accepted alternative shape has the same element order; read it flat.
    const shape = info.shape.length === exp.shape.length ? info.shape : exp.shape;
    const layout = exp.layout ?? "as-stored";
    if (layout !== "as-stored" && shape !== info.shape) {
      throw new SaeFormatError(`${this.source.path}: tensor '${name}' cannot be re-laid out`);
    }
    const out = await this.source.read(name, layout, (bytes) => {
      this.#done += bytes;
      this.#onProgress?.(this.#done, this.#total, name);
    });
    return out;
  }
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
    ...(cfg.legacy ? ["scaling_factor"] : []),
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
      dims: cfg.kind === "transcoder" ? "[d_sae, d_out]" : "[d_sae, d_in]",
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
    if (cfg.legacy && r.has("scaling_factor")) {
      // Legacy decode was (f * scaling_factor) @ W_dec; folding it into the
      // decoder rows keeps decode identical and leaves encode untouched.
      const s = await vec("scaling_factor", dSae, "[d_sae]");
      if (s.some((v) => v !== 1)) {
        for (let i = 0; i < dSae; i++) {
          for (let j = 0; j < dOut; j++) sae.wDec[i * dOut + j] *= s[i];
        }
      }
    }
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
