/**
 * SAELens `cfg.json` rules: how SAELens 6.18 reads a config (v6 with model
 * keys under `metadata`, or the older flat config converted the way
 * `handle_pre_6_0_config` does, then the config classes' defaults), giving
 * the inference-relevant {@linkcode SaeLensConfig} with the provenance of
 * every setting a rule decided. Recognising a pre-6.0 config and converting
 * it is in {@linkcode ./saelens_legacy.ts}.
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
import {
  isLegacyConfig,
  isRecord,
  legacyActivation,
  PRE6,
  renameLegacyKeys,
} from "./saelens_legacy.ts";
import type { SafetensorsDtype } from "./safetensors.ts";

export { isBelowV6rc0, isRecord } from "./saelens_legacy.ts";

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

  const legacy = isLegacyConfig(raw, source, note);
  const { cfg, renamedFrom } = renameLegacyKeys(raw, legacy);
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

  const { architecture, k, kFrom } = legacy
    ? legacyActivation({ cfg, renamedFrom, source, note })
    : { architecture: cfg.architecture, k: cfg.k, kFrom: "k" };
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
