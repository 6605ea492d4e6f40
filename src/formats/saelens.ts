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
  SettingProvenance,
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
  /** `finetuning_scaling_factor`: a non-unit `scaling_factor` tensor is applied to the latents. */
  finetuningScalingFactor: boolean;
  /** `hook_head_index`: the SAE reads that head's slice of the hook. */
  hookHeadIndex?: number;
  /** Which upstream rule decided each setting not stated plainly in the file. */
  provenance: SettingProvenance[];
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * SAELens's version test (`handle_config_defaulting`): is `version` below
 * `6.0.0-rc.0` under PEP 440 ordering (what `packaging.version.Version`
 * compares)? Returns `null` for a string PEP 440 cannot parse (SAELens raises).
 *
 * @example
 * ```ts
 * isBelowV6rc0("5.9.1"); // true
 * isBelowV6rc0("6.0.0-rc.1"); // false
 * ```
 */
export function isBelowV6rc0(version: string): boolean | null {
  const m =
    /^\s*v?(?:(\d+)!)?(\d+(?:\.\d+)*)(?:[-_.]?(a|alpha|b|beta|c|rc|pre|preview)[-_.]?(\d+)?)?(?:-(\d+)|[-_.]?(post|rev|r)[-_.]?(\d+)?)?(?:[-_.]?(dev)[-_.]?(\d+)?)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$/i
      .exec(version);
  if (!m) return null;
  if (m[1] !== undefined && Number(m[1]) > 0) return false; // a later epoch
  const release = m[2].split(".").map(Number);
  for (let i = 0; i < Math.max(3, release.length); i++) {
    const d = (release[i] ?? 0) - (i === 0 ? 6 : 0);
    if (d !== 0) return d < 0;
  }
  // The release is 6.0.0: the suffixes decide.
  const pre = m[3]?.toLowerCase();
  const post = m[5] !== undefined || m[6] !== undefined;
  const dev = m[8] !== undefined;
  if (pre === undefined) return dev && !post; // 6.0.0.devN sorts before every pre-release
  if (pre === "a" || pre === "alpha" || pre === "b" || pre === "beta") return true;
  if (Number(m[4] ?? 0) > 0) return false; // rc1 and later
  return dev && !post; // rc0.devN < rc0
}

/** `${source}: key 'k': expected …, found …` */
export function badKey(source: string, key: string, expected: string, found: unknown): never {
  throw new SaeFormatError(
    `${source}: key '${key}': expected ${expected}, found ${
      found === undefined ? "nothing (missing)" : JSON.stringify(found)
    }`,
  );
}

/** Where each rule lives in SAELens (sae_lens/loading/pretrained_sae_loaders.py and the config classes). */
const PRE6 = "SAELens pre-6.0 rule, handle_pre_6_0_config";

/**
 * Interpret a parsed `cfg.json` the way SAELens 6.18 (`SAE.load_from_disk`)
 * does: `handle_config_defaulting` sends a config without
 * `sae_lens_version` (top level, else `metadata`) or with one below
 * `6.0.0-rc.0` through `handle_pre_6_0_config` (renames, defaults, `k` from
 * `activation_fn_kwargs`, boolean `normalize_activations`), then the
 * architecture's config class fills its dataclass defaults (`k = 100`,
 * `d_out = 768`, `dtype = "float32"`, `apply_b_dec_to_input = true`). Every
 * setting a rule decided is listed in `provenance`.
 *
 * @param raw the parsed JSON
 * @param source the config path, used in error messages
 * @throws {SaeFormatError} on a missing or invalid key, or an unsupported option
 *
 * @example
 * ```ts
 * const cfg = parseSaeLensConfig(
 *   { architecture: "topk", d_in: 16, d_sae: 64, activation_fn_kwargs: { k: 8 } },
 *   "sae/cfg.json",
 * );
 * cfg.k; // 8, from activation_fn_kwargs (SAELens pre-6.0 rule)
 * ```
 */
export function parseSaeLensConfig(raw: unknown, source: string): SaeLensConfig {
  if (!isRecord(raw)) {
    throw new SaeFormatError(`${source}: expected a JSON object, found ${JSON.stringify(raw)}`);
  }
  const bad = (key: string, expected: string, found: unknown): never =>
    badKey(source, key, expected, found);
  const provenance: SettingProvenance[] = [];
  const note = (setting: string, value: SettingProvenance["value"], rule: string) =>
    provenance.push({ setting, value, rule });

  // handle_config_defaulting: the top-level version when truthy, else metadata's.
  let version: unknown = raw.sae_lens_version;
  let versionKey = "sae_lens_version";
  if (!version && isRecord(raw.metadata)) {
    version = raw.metadata.sae_lens_version;
    versionKey = "metadata.sae_lens_version";
  }
  let legacy: boolean;
  if (!version) legacy = true;
  else {
    const below = typeof version === "string" ? isBelowV6rc0(version) : null;
    if (below === null) bad(versionKey, "a version string (PEP 440, e.g. '6.18.0')", version);
    legacy = below as boolean;
  }
  if (legacy) {
    note(
      "config layout",
      "pre-6.0",
      `${
        version
          ? `${versionKey} ${JSON.stringify(version)} is below 6.0.0-rc.0`
          : "no sae_lens_version"
      }: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)`,
    );
  }

  // handle_pre_6_0_config renames keys in file order, so a later key wins over an earlier one.
  const RENAMES: Record<string, string> = {
    hook_point: "hook_name",
    hook_point_head_index: "hook_head_index",
    activation_fn_str: "activation_fn",
  };
  const cfg: Json = {};
  const renamedFrom: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    const to = legacy ? RENAMES[key] ?? key : key;
    cfg[to] = value;
    if (to !== key) renamedFrom[to] = key;
    else delete renamedFrom[to];
  }
  // Model keys: legacy files keep them at the top level (SAELens rebuilds metadata from
  // them, LLM_METADATA_KEYS); 6.x files under metadata (top level read as a fallback).
  const metadata = !legacy && isRecord(cfg.metadata) ? cfg.metadata : {};
  const meta = (key: string): unknown => legacy ? cfg[key] : metadata[key] ?? cfg[key];
  const posInt = (key: string, v: unknown): number =>
    typeof v === "number" && Number.isSafeInteger(v) && v > 0
      ? v
      : bad(key, "a positive integer", v);

  const dIn = posInt("d_in", cfg.d_in);
  const dSae = posInt("d_sae", cfg.d_sae);
  const hookName = stringOrNull(meta("hook_name"));
  if (legacy && renamedFrom.hook_name) {
    note("hook_name", hookName, `from ${renamedFrom.hook_name} (${PRE6})`);
  }

  let architecture: unknown = cfg.architecture;
  let k: unknown = cfg.k;
  let kFrom = "k";
  if (legacy) {
    if (architecture === undefined) {
      architecture = "standard";
      note("architecture", "standard", `no architecture key: default 'standard' (${PRE6})`);
    }
    const fnKey = renamedFrom.activation_fn ?? "activation_fn";
    const activationFn = cfg.activation_fn ?? "relu";
    const kwargs = cfg.activation_fn_kwargs;
    if (kwargs !== undefined && kwargs !== null && !isRecord(kwargs)) {
      bad("activation_fn_kwargs", 'an object such as {"k": 32}', kwargs);
    }
    const kwargK = isRecord(kwargs) ? kwargs.k : undefined;
    if (activationFn === "topk" && kwargK !== undefined && kwargK !== null) {
      if (architecture !== "topk") {
        note(
          "architecture",
          "topk",
          `from ${fnKey} 'topk' with activation_fn_kwargs.k (${PRE6}; was ${
            JSON.stringify(architecture)
          })`,
        );
      }
      architecture = "topk";
    } else if (activationFn === "topk") {
      // SAELens keeps the architecture (ReLU unless it says otherwise); SAELens ≤ 5 refused.
      note(
        "architecture",
        architecture as string,
        `${fnKey} 'topk' without activation_fn_kwargs.k: SAELens 6 keeps architecture ${
          JSON.stringify(architecture)
        } and ignores the activation (${PRE6})`,
      );
    } else if (activationFn === "tanh-relu") {
      // SAELens 6 drops activation_fn and would run ReLU; SAELens ≤ 5 computed tanh(relu(h)).
      bad(
        fnKey,
        "'relu' or 'topk' (a 'tanh-relu' SAE computes tanh(relu(h)), which latentwatch does not run; SAELens 6 ignores the key and would run it as ReLU)",
        activationFn,
      );
    } else if (activationFn !== "relu") {
      bad(fnKey, "'relu', 'topk' or 'tanh-relu' (the activations SAELens ever had)", activationFn);
    }
    if (architecture === "topk" && kwargs !== undefined) {
      // handle_pre_6_0_config: activation_fn_kwargs["k"] whenever the architecture is topk.
      if (kwargK === undefined || kwargK === null) {
        bad(
          "activation_fn_kwargs.k",
          "a positive integer (SAELens reads k from activation_fn_kwargs whenever a pre-6.0 config's architecture is 'topk', and fails without it)",
          kwargK,
        );
      }
      k = kwargK;
      kFrom = "activation_fn_kwargs.k";
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

  let dtypeRaw = cfg.dtype;
  if (dtypeRaw === undefined) {
    dtypeRaw = "float32";
    note("dtype", "float32", "no dtype key: default 'float32' (SAELens SAEConfig)");
  }
  const dtypeName = typeof dtypeRaw === "string" ? dtypeRaw.replace(/^torch\./, "") : "";
  if (!Object.hasOwn(CFG_DTYPES, dtypeName)) {
    bad("dtype", "float32, float16, bfloat16 or float64 (optionally 'torch.'-prefixed)", dtypeRaw);
  }

  let normalize: unknown = cfg.normalize_activations;
  if (legacy && typeof normalize === "boolean") {
    normalize = normalize ? "expected_average_only_in" : "none";
    note(
      "normalize_activations",
      normalize as string,
      `from boolean ${cfg.normalize_activations} (${PRE6})`,
    );
  } else if (normalize === undefined || (legacy && normalize === null)) {
    normalize = "none";
  }
  const NORMS = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];
  if (typeof normalize !== "string" || !NORMS.includes(normalize)) {
    bad("normalize_activations", NORMS.map((n) => `'${n}'`).join(", "), normalize);
  }
  let normScalingFactor: number | undefined;
  if (cfg.norm_scaling_factor !== undefined && cfg.norm_scaling_factor !== null) {
    const s = cfg.norm_scaling_factor;
    if (typeof s !== "number" || !(s > 0) || !Number.isFinite(s)) {
      bad("norm_scaling_factor", "a positive number", s);
    }
    normScalingFactor = s as number;
  }

  let reshape = cfg.reshape_activations;
  if (reshape === undefined) {
    // handle_pre_6_0_config infers hook_z from the hook name; 6.x defaults to "none".
    reshape = legacy && hookName?.includes("hook_z") ? "hook_z" : "none";
    if (reshape === "hook_z") {
      note(
        "reshape_activations",
        "hook_z",
        `hook name ${JSON.stringify(hookName)} contains 'hook_z' (${PRE6})`,
      );
    }
  }
  if (reshape !== "none" && reshape !== "hook_z") {
    bad("reshape_activations", "'none' or 'hook_z'", reshape);
  }
  const headIndex = meta("hook_head_index");
  let hookHeadIndex: number | undefined;
  if (headIndex !== undefined && headIndex !== null) {
    if (typeof headIndex !== "number" || !Number.isSafeInteger(headIndex) || headIndex < 0) {
      bad("hook_head_index", "null or a head index (a non-negative integer)", headIndex);
    }
    hookHeadIndex = headIndex as number;
    if (legacy && renamedFrom.hook_head_index) {
      note("hook_head_index", hookHeadIndex, `from ${renamedFrom.hook_head_index} (${PRE6})`);
    }
  }

  let applyBDec = cfg.apply_b_dec_to_input;
  if (applyBDec === undefined) {
    // Transcoders never subtract b_dec; SAELens's TranscoderConfig would default to true and raise.
    applyBDec = !transcoder;
    note(
      "apply_b_dec_to_input",
      applyBDec as boolean,
      transcoder
        ? "no key: false for transcoders (latentwatch rule; SAELens's TranscoderConfig defaults to true and then raises)"
        : legacy
        ? `no key: default true (${PRE6})`
        : "no key: default true (SAELens SAEConfig)",
    );
  }
  if (typeof applyBDec !== "boolean") bad("apply_b_dec_to_input", "a boolean", applyBDec);
  if (transcoder && applyBDec) {
    bad(
      "apply_b_dec_to_input",
      `false for a ${architecture} (SAELens raises: transcoders never subtract b_dec from their input)`,
      applyBDec,
    );
  }
  const rescale = cfg.rescale_acts_by_decoder_norm ?? false;
  if (typeof rescale !== "boolean") bad("rescale_acts_by_decoder_norm", "a boolean", rescale);
  const fsf = cfg.finetuning_scaling_factor ?? false;
  if (typeof fsf !== "boolean") bad("finetuning_scaling_factor", "a boolean", fsf);

  let dOut = dIn;
  if (transcoder) {
    if (cfg.d_out === undefined) {
      dOut = 768;
      note("d_out", 768, "no d_out key: default 768 (SAELens TranscoderConfig)");
    } else dOut = posInt("d_out", cfg.d_out);
  }

  const out: SaeLensConfig = {
    architecture: arch,
    cfgArchitecture: architecture,
    kind,
    skip,
    dIn,
    dSae,
    dOut,
    dtype: CFG_DTYPES[dtypeName],
    applyBDecToInput: applyBDec as boolean,
    rescaleActsByDecoderNorm: arch === "topk" && (rescale as boolean),
    finetuningScalingFactor: fsf as boolean,
    normalize: normalize as SaeLensConfig["normalize"],
    reshapeActivations: reshape as "none" | "hook_z",
    hookName,
    hookNameOut: transcoder ? stringOrNull(meta("hook_name_out")) : null,
    modelName: stringOrNull(meta("model_name")),
    neuronpediaId: stringOrNull(meta("neuronpedia_id")),
    legacy,
    provenance,
  };
  if (hookHeadIndex !== undefined) out.hookHeadIndex = hookHeadIndex;
  if (normScalingFactor !== undefined) out.normScalingFactor = normScalingFactor;
  if (arch === "topk") {
    let kv: number;
    if (k === undefined) {
      // TopKSAEConfig's dataclass default.
      if (dSae < 100) {
        bad(
          "k",
          `a positive integer at most d_sae = ${dSae} (SAELens's TopKSAEConfig default k = 100 does not fit)`,
          k,
        );
      }
      kv = 100;
      note("k", 100, "no k key: default 100 (SAELens TopKSAEConfig)");
    } else {
      kv = posInt(kFrom, k);
      if (kv > dSae) bad(kFrom, `at most d_sae = ${dSae}`, kv);
      if (kFrom !== "k") note("k", kv, `from ${kFrom} (${PRE6})`);
    }
    out.k = kv;
  }
  return out;
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
