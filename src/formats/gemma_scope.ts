/**
 * Gemma Scope 1 SAEs and transcoders (Google DeepMind, for Gemma 2), see the
 * reference sae-formats.md §2: `layer_{L}/width_{W}/average_l0_{N}/params.npz`
 * with `W_enc [d_model, d_sae]`, `W_dec [d_sae, d_model]`, `b_enc`, `b_dec`,
 * `threshold` (lower-case `w_enc`/`w_dec` accepted), and the layout of their
 * paths. Gemma Scope 2 (Gemma 3) is `gemma_scope_2.ts`.
 *
 * JumpReLU with **no** `b_dec` subtraction and no normalisation:
 * `h = x @ W_enc + b_enc; f = relu(h)·[h > threshold]`.
 *
 * @module
 */

import { join } from "node:path";
import type { SaeWeights, SettingProvenance } from "../core/sae.ts";
import type { NpyArray } from "./npy.ts";
import { readNpz } from "./npz.ts";
import { SaeFormatError } from "./errors.ts";
import { readJumpRelu } from "./gemma_scope_jumprelu.ts";
import { memoryTensorSource, type SaeLoadOptions } from "./weights.ts";
/** Gemma Scope 1 weights file name. */
export const GEMMA_SCOPE_NPZ = "params.npz";

/**
 * `width_16k` → 16384, `width_131k` → 131072, `width_1m` → 2^20: the widths
 * are powers of two written rounded to thousands (the SAELens mapping).
 *
 * @example
 * ```ts
 * parseGemmaScopeWidth("65k"); // 65536
 * ```
 */
export function parseGemmaScopeWidth(w: string): number | null {
  const m = /^(\d+)(k|m)?$/i.exec(w);
  if (!m) return null;
  const unit = m[2]?.toLowerCase();
  if (!unit) return Number(m[1]);
  return 2 ** Math.round(Math.log2(Number(m[1]) * (unit === "k" ? 1e3 : 1e6)));
}

/** What the Gemma Scope 1 path layout says about the SAE. */
export interface GemmaScopePathInfo {
  /** `google/gemma-scope-2b-pt-res` style repo folder found in the path, if any. */
  repo: string | null;
  modelName: string | null;
  site: "res" | "mlp" | "att" | "transcoders" | null;
  layer: number | null;
  /** `null` for the embedding SAEs (`embedding/width_4k/…`). */
  embedding: boolean;
  width: number | null;
  averageL0: number | null;
}

/**
 * Read `…/gemma-scope-{2b,9b,27b}-{pt,it}-{res,mlp,att,transcoders}/layer_{L}/width_{W}/average_l0_{N}/params.npz`
 * (each part optional) into what it tells about the SAE.
 *
 * @example
 * ```ts
 * parseGemmaScopePath("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71/params.npz");
 * // { modelName: "gemma-2-2b", site: "res", layer: 20, width: 16384, averageL0: 71, … }
 * ```
 */
export function parseGemmaScopePath(path: string): GemmaScopePathInfo {
  const parts = path.split(/[\\/]+/);
  const info: GemmaScopePathInfo = {
    repo: null,
    modelName: null,
    site: null,
    layer: null,
    embedding: false,
    width: null,
    averageL0: null,
  };
  for (const part of parts) {
    const repo = /^gemma-scope-(\d+b)-(pt|it)-(res|mlp|att|transcoders)$/.exec(part);
    if (repo) {
      info.repo = part;
      info.modelName = `gemma-2-${repo[1]}${repo[2] === "it" ? "-it" : ""}`;
      info.site = repo[3] as GemmaScopePathInfo["site"];
    }
    const layer = /^layer_(\d+)$/.exec(part);
    if (layer) info.layer = Number(layer[1]);
    if (part === "embedding") info.embedding = true;
    const width = /^width_(\w+)$/.exec(part);
    if (width) info.width = parseGemmaScopeWidth(width[1]);
    const l0 = /^average_l0_(\d+)$/.exec(part);
    if (l0) info.averageL0 = Number(l0[1]);
  }
  return info;
}

/** TransformerLens hooks of a Gemma Scope 1 site at layer L (§2.1). */
function gemmaScope1Hooks(info: GemmaScopePathInfo): { in: string | null; out: string | null } {
  if (info.embedding) return { in: "hook_embed", out: null };
  const L = info.layer;
  if (L === null || info.site === null) return { in: null, out: null };
  switch (info.site) {
    case "res":
      return { in: `blocks.${L}.hook_resid_post`, out: null };
    case "mlp":
      return { in: `blocks.${L}.hook_mlp_out`, out: null };
    case "att":
      return { in: `blocks.${L}.attn.hook_z`, out: null };
    case "transcoders":
      return { in: `blocks.${L}.ln2.hook_normalized`, out: `blocks.${L}.hook_mlp_out` };
  }
}

/** Resolve a Gemma Scope 1 path (the npz or its `average_l0_*` folder) to the npz file. */
export async function gemmaScopeNpzPath(path: string): Promise<string> {
  if (path.endsWith(".npz")) return path;
  try {
    if ((await Deno.stat(path)).isDirectory) return join(path, GEMMA_SCOPE_NPZ);
  } catch {
    // Fall through: the read below reports the missing file.
  }
  return path;
}

/**
 * Load a Gemma Scope 1 `params.npz` (the file or its `average_l0_*` folder).
 * The model, hook and width come from the path layout when it follows the
 * HF repo (`gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71`); the
 * width in the path must match the file. Embedding SAEs are rescaled as
 * SAELens does (`W_enc / √d_in`, `W_dec · √d_in`), since `hook_embed` comes
 * before Gemma's ×√d_model.
 *
 * @throws {SaeFormatError} naming the file, array, expected and found shape
 *
 * @example
 * ```ts
 * const sae = await loadGemmaScope("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71");
 * sae.hookName; // "blocks.20.hook_resid_post"
 * ```
 */
export async function loadGemmaScope(path: string, opts: SaeLoadOptions = {}): Promise<SaeWeights> {
  const file = await gemmaScopeNpzPath(path);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new SaeFormatError(
      `${file}: cannot read the Gemma Scope params: ${(e as Error).message}`,
      { cause: e },
    );
  }
  let arrays;
  try {
    arrays = await readNpz(bytes, file);
  } catch (e) {
    throw new SaeFormatError(`${file}: not a readable .npz: ${(e as Error).message}`, { cause: e });
  }
  const info = parseGemmaScopePath(file);
  const hooks = gemmaScope1Hooks(info);
  const provenance = gemmaScope1Keys(arrays, info.site === "transcoders", file);
  const source = memoryTensorSource(file, arrays);
  const sae = await readJumpRelu(source, {
    names: { wEnc: "W_enc", wDec: "W_dec", bEnc: "b_enc", bDec: "b_dec", threshold: "threshold" },
    what: "a Gemma Scope JumpReLU SAE",
    configPath: info.width !== null ? `the path (width ${info.width})` : file,
    width: info.width,
    widthFrom: `the path's width folder`,
    onProgress: opts.onProgress,
  });
  provenance.push({
    setting: "threshold",
    value: "params.npz 'threshold'",
    rule:
      "latent active when h > threshold, strictly (Gemma Scope 1 rule: the release tutorial's JumpReLUSAE)",
  }, {
    setting: "apply_b_dec_to_input",
    value: false,
    rule: "Gemma Scope never subtracts b_dec (SAELens get_gemma_2_config_from_hf)",
  });
  if (info.embedding) {
    // SAELens gemma_2_sae_huggingface_loader: the SAE was trained on embeddings
    // after ×√d_model, while hook_embed is before it.
    const r = Math.sqrt(sae.dIn);
    for (let i = 0; i < sae.wEnc.length; i++) sae.wEnc[i] /= r;
    for (let i = 0; i < sae.wDec.length; i++) sae.wDec[i] *= r;
  }
  sae.format = "gemma-scope";
  sae.source = file;
  sae.modelName = info.modelName;
  sae.hookName = hooks.in;
  if (info.embedding) {
    provenance.push({
      setting: "W_enc, W_dec",
      value: `W_enc ÷ √${sae.dIn}, W_dec × √${sae.dIn}`,
      rule:
        "embedding SAE trained after Gemma's ×√d_model, read at hook_embed (SAELens gemma_2_sae_huggingface_loader)",
    });
  }
  if (info.modelName !== null) {
    provenance.push({
      setting: "model_name",
      value: info.modelName,
      rule: `from the repo folder ${info.repo} (SAELens get_gemma_2_config_from_hf model table)`,
    });
  }
  if (hooks.in !== null) {
    provenance.push({
      setting: "hook_name",
      value: hooks.in,
      rule: info.embedding
        ? "embedding folder of a res repo: hook_embed (SAELens get_gemma_2_config_from_hf)"
        : info.site === "transcoders"
        ? `layer_${info.layer} of a transcoders repo (SAELens get_gemma_2_transcoder_config_from_hf)`
        : `${info.site} repo, layer_${info.layer} (SAELens get_gemma_2_config_from_hf)`,
    });
  }
  if (info.site === "transcoders") {
    sae.kind = "transcoder";
    sae.dOut = sae.dIn;
    sae.hookNameOut = hooks.out;
    provenance.push({
      setting: "hook_name_out",
      value: hooks.out,
      rule: "transcoders write the MLP output (SAELens get_gemma_2_transcoder_config_from_hf)",
    });
  }
  sae.provenance = provenance;
  return sae;
}

/** Gemma Scope 1 transcoder key spellings, lower-cased (SAELens gemma_2_transcoder_huggingface_loader). */
const TRANSCODER_KEYS: Record<string, string> = {
  w_enc: "W_enc",
  wenc: "W_enc",
  w_e: "W_enc",
  w_dec: "W_dec",
  wdec: "W_dec",
  w_d: "W_dec",
  b_enc: "b_enc",
  benc: "b_enc",
  b_e: "b_enc",
  b_dec: "b_dec",
  bdec: "b_dec",
  b_d: "b_dec",
  threshold: "threshold",
};

/**
 * Rename the npz arrays in place the way SAELens reads them, and apply its
 * `scaling_factor` rule. SAEs (`gemma_2_sae_huggingface_loader`): `w_x` →
 * `W_x`; a `scaling_factor` array of ones is dropped, any other fails
 * (the Gemma 2 config says `finetuning_scaling_factor: False`). Transcoders
 * (`gemma_2_transcoder_huggingface_loader`): the spellings in
 * `TRANSCODER_KEYS`, case-insensitively; every other array is ignored.
 *
 * @returns the renames and drops, as provenance
 */
function gemmaScope1Keys(
  arrays: Map<string, NpyArray>,
  transcoder: boolean,
  file: string,
): SettingProvenance[] {
  const provenance: SettingProvenance[] = [];
  const rename = (key: string, to: string, rule: string) => {
    if (key === to || arrays.has(to)) return;
    arrays.set(to, arrays.get(key)!);
    arrays.delete(key);
    provenance.push({ setting: to, value: `params.npz '${key}'`, rule });
  };
  for (const key of [...arrays.keys()]) {
    if (transcoder) {
      const to = TRANSCODER_KEYS[key.toLowerCase()];
      if (to) {
        rename(
          key,
          to,
          "key spelling accepted case-insensitively (SAELens gemma_2_transcoder_huggingface_loader)",
        );
      }
    } else if (key.startsWith("w_")) {
      rename(
        key,
        "W_" + key.slice(2),
        "'w_' read as 'W_' (SAELens gemma_2_sae_huggingface_loader)",
      );
    }
  }
  const scale = arrays.get("scaling_factor");
  if (scale !== undefined && !transcoder) {
    // torch.allclose(s, ones): |s - 1| <= atol 1e-8 + rtol 1e-5 · 1.
    if (!scale.data.every((v) => Math.abs(v - 1) <= 1e-8 + 1e-5)) {
      throw new SaeFormatError(
        `${file}: array 'scaling_factor': expected all ones (Gemma Scope SAEs have finetuning_scaling_factor false; SAELens raises "Scaling factor is present but finetuning_scaling_factor is False."), found [${
          [...scale.data.subarray(0, 4)].join(", ")
        }${scale.data.length > 4 ? ", …" : ""}]`,
      );
    }
    arrays.delete("scaling_factor");
    provenance.push({
      setting: "scaling_factor",
      value: "ignored",
      rule: "array allclose to ones: dropped (SAELens gemma_2_sae_huggingface_loader)",
    });
  }
  return provenance;
}
