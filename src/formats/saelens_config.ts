/**
 * SAELens `cfg.json` rules: how SAELens 6.18 reads a config (v6 with model
 * keys under `metadata`, or the older flat config converted the way
 * `handle_pre_6_0_config` does, then the config classes' defaults), giving
 * the inference-relevant {@linkcode SaeLensConfig} with the provenance of
 * every setting a rule decided.
 *
 * @module
 */
import type { Dtype } from "../core/dtype.ts";
import type {
  InputNormalization,
  SaeArchitecture,
  SaeKind,
  SettingProvenance,
  WeightDtype,
} from "../core/sae.ts";
import { badKey, SaeFormatError } from "./errors.ts";
import type { SafetensorsDtype } from "./safetensors.ts";
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

/** A cfg dtype as safetensors names it. */
export const DISK_DTYPE: Record<WeightDtype, SafetensorsDtype> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
};

/** A cfg dtype as `src/core/dtype.ts` names it. */
export const CORE_DTYPE: Record<WeightDtype, Dtype> = {
  float32: "f32",
  float16: "f16",
  bfloat16: "bf16",
};

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

/** A JSON object (not null, not an array). */
export function isRecord(v: unknown): v is Json {
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
