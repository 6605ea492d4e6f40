/**
 * Gemma Scope SAEs and transcoders (Google DeepMind), see the reference
 * sae-formats.md §2:
 * - Gemma Scope 1 (Gemma 2): `layer_{L}/width_{W}/average_l0_{N}/params.npz`
 *   with `W_enc [d_model, d_sae]`, `W_dec [d_sae, d_model]`, `b_enc`, `b_dec`,
 *   `threshold` (lower-case `w_enc`/`w_dec` accepted).
 * - Gemma Scope 2 (Gemma 3): `config.json` + `params.safetensors` with
 *   lower-case keys, `affine_skip_connection [d_in, d_out]` on `_affine`
 *   transcoders, and cross-layer transcoders stored one source layer per
 *   `params_layer_{i}.safetensors`.
 *
 * Both are JumpReLU with **no** `b_dec` subtraction and no normalisation:
 * `h = x @ W_enc + b_enc; f = relu(h)·[h > threshold]`.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { SaeWeights, SettingProvenance } from "../core/sae.ts";
import type { NpyArray } from "./npy.ts";
import { readNpz } from "./npz.ts";
import { badKey, readJsonFile, SaeFormatError } from "./errors.ts";
import {
  memoryTensorSource,
  openSafetensorsSource,
  type SaeLoadOptions,
  type TensorSource,
  WeightReader,
} from "./weights.ts";

/** Gemma Scope 1 weights file name. */
export const GEMMA_SCOPE_NPZ = "params.npz";
/** Gemma Scope 2 file names. */
export const GEMMA_SCOPE_2_CONFIG = "config.json";
export const GEMMA_SCOPE_2_PARAMS = "params.safetensors";
/** Cross-layer transcoder files: one per source layer. */
export const GEMMA_SCOPE_2_CLT_PARAMS = /^params_layer_(\d+)\.safetensors$/;

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

interface JumpReluNames {
  wEnc: string;
  wDec: string;
  bEnc: string;
  bDec: string;
  threshold: string;
}

/** Read a JumpReLU SAE/transcoder stored `w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]` (no transposes). */
async function readJumpRelu(
  source: TensorSource,
  o: {
    names: JumpReluNames;
    what: string;
    configPath: string;
    width: number | null;
    widthFrom: string;
    skipName?: string;
    /** CLT: take `w_dec[:, layer, :]` of a `[d_sae, n_layers, d_out]` decoder. */
    cltLayer?: number;
    onProgress?: SaeLoadOptions["onProgress"];
  },
): Promise<SaeWeights> {
  const n = o.names;
  const encShape = source.info(n.wEnc)?.shape;
  const decShape = source.info(n.wDec)?.shape;
  // Annotated so the never-returning r.missing() narrows below.
  const r: WeightReader = new WeightReader(source, {
    what: o.what,
    configPath: o.configPath,
    wanted: [n.wEnc, n.wDec, n.bEnc, n.bDec, n.threshold, ...(o.skipName ? [o.skipName] : [])],
    onProgress: o.onProgress,
  });
  if (!encShape) r.missing(n.wEnc, { shape: [NaN, NaN], dims: "[d_in, d_sae]" });
  if (encShape.length !== 2) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wEnc}' has shape [${encShape}], expected [d_in, d_sae] (2-D)`,
    );
  }
  const [dIn, dSae] = encShape;
  if (o.width !== null && dSae !== o.width) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wEnc}' has shape [${encShape}], expected d_sae = ${o.width} from ${o.widthFrom}`,
    );
  }
  const clt = o.cltLayer !== undefined;
  if (!decShape) r.missing(n.wDec, { shape: [dSae, NaN], dims: "[d_sae, d_out]" });
  const dOut = decShape[decShape.length - 1];
  if (clt && (decShape.length !== 3 || o.cltLayer! >= decShape[1])) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wDec}' has shape [${decShape}], expected [d_sae, n_layers, d_out] = [${dSae}, >${o.cltLayer}, d_out] for source layer ${o.cltLayer} of a cross-layer transcoder`,
    );
  }
  const wEnc = await r.f32(n.wEnc, { shape: [dIn, dSae], dims: "[d_in, d_sae]" });
  const wDec = clt
    ? await r.f32(n.wDec, {
      shape: [dSae, decShape[1], dOut],
      dims: "[d_sae, n_layers, d_out]",
      layout: { select: o.cltLayer! },
    })
    : await r.f32(n.wDec, { shape: [dSae, dOut], dims: "[d_sae, d_out]" });
  const sae: SaeWeights = {
    format: "gemma-scope",
    architecture: "jumprelu",
    dIn,
    dSae,
    hookName: null,
    modelName: null,
    dtype: diskDtype(r.dtype(n.wEnc)),
    // Gemma Scope never subtracts b_dec from the input (§2.1).
    applyBDecToInput: false,
    wEnc,
    bEnc: await r.f32(n.bEnc, { shape: [dSae], dims: "[d_sae]" }),
    wDec,
    bDec: await r.f32(n.bDec, { shape: [dOut], dims: "[d_out]" }),
    threshold: await r.f32(n.threshold, { shape: [dSae], dims: "[d_sae]" }),
    source: source.path,
  };
  if (dOut !== dIn) {
    sae.kind = "transcoder";
    sae.dOut = dOut;
  }
  if (o.skipName) {
    // affine_skip_connection is [d_in, d_out] and used as x @ A, untransposed
    // (the Gemma Scope 2 tutorial); our wSkip has the same meaning.
    sae.wSkip = await r.f32(o.skipName, { shape: [dIn, dOut], dims: "[d_in, d_out]" });
  }
  return sae;
}

function diskDtype(d: string | undefined): SaeWeights["dtype"] {
  if (d === "F16" || d === "f16") return "float16";
  if (d === "BF16") return "bfloat16";
  return "float32";
}

/**
 * HF hook strings of Gemma Scope 2 configs → TransformerLens names (§2.2,
 * as SAELens maps them since PR #624). Returns null for an unknown string.
 *
 * @example
 * ```ts
 * gemmaScope2Hook("model.layers.22.output"); // "blocks.22.hook_resid_post"
 * ```
 */
export function gemmaScope2Hook(hf: string): string | null {
  const m = /^(?:model\.)?(?:language_model\.)?(?:model\.)?layers\.(\d+)(?:\.(.+))?$/.exec(hf);
  if (!m) return null;
  const L = m[1];
  switch (m[2] ?? "output") {
    case "output":
      return `blocks.${L}.hook_resid_post`;
    case "self_attn.o_proj.input":
      return `blocks.${L}.attn.hook_z`;
    case "post_feedforward_layernorm.output":
      return `blocks.${L}.hook_mlp_out`;
    case "pre_feedforward_layernorm.output":
      return `blocks.${L}.hook_mlp_in`;
    default:
      return null;
  }
}

/** Options for {@linkcode loadGemmaScope2}. */
export interface GemmaScope2Options extends SaeLoadOptions {
  /** Cross-layer transcoders given as a folder: the source layer to load. */
  layer?: number;
}

/**
 * Load a Gemma Scope 2 SAE or transcoder: a folder (or its
 * `params.safetensors`) with `config.json`, or one source layer of a
 * cross-layer transcoder (`params_layer_{i}.safetensors`, or the folder with
 * `opts.layer`). Tensors are read one by one from disk. The affine skip
 * connection is kept as stored (`x @ affine`); CLT decoders keep only the
 * source layer's own output slice `w_dec[:, i, :]`.
 *
 * @throws {SaeFormatError} naming the file, key or tensor, expected and found
 *
 * @example
 * ```ts
 * const tc = await loadGemmaScope2("gemma-scope-2-1b-pt/transcoder/layer_12_width_16k_l0_small_affine");
 * tc.kind; // "transcoder"
 * ```
 */
export async function loadGemmaScope2(
  path: string,
  opts: GemmaScope2Options = {},
): Promise<SaeWeights> {
  let dir = path;
  let file: string | null = null;
  if (path.endsWith(".safetensors")) {
    dir = dirname(path);
    file = path;
  } else if (basename(path) === GEMMA_SCOPE_2_CONFIG) {
    dir = dirname(path);
  }
  const cfgPath = join(dir, GEMMA_SCOPE_2_CONFIG);
  const raw = await readJsonFile(cfgPath, "Gemma Scope 2 config");
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SaeFormatError(`${cfgPath}: expected a JSON object, found ${JSON.stringify(raw)}`);
  }
  const cfg = raw as Record<string, unknown>;
  const arch = cfg.architecture ?? "jump_relu";
  if (arch !== "jump_relu" && arch !== "jumprelu") {
    badKey(cfgPath, "architecture", "'jump_relu' (Gemma Scope 2 SAEs are JumpReLU)", arch);
  }
  const type = cfg.type ?? null;
  if (type === "crosscoder") {
    throw new SaeFormatError(
      `${cfgPath}: key 'type': "crosscoder" is not supported (it reads several layers at once); expected "sae", "transcoder" or "clt"`,
    );
  }
  if (type !== null && type !== "sae" && type !== "transcoder" && type !== "clt") {
    badKey(cfgPath, "type", "'sae', 'transcoder' or 'clt'", type);
  }

  // Which file, and for CLTs which source layer.
  let layer: number | null = null;
  if (file !== null) {
    const m = GEMMA_SCOPE_2_CLT_PARAMS.exec(basename(file));
    if (m) layer = Number(m[1]);
  } else if (opts.layer !== undefined || type === "clt") {
    if (opts.layer === undefined) {
      throw new SaeFormatError(
        `${dir}: a cross-layer transcoder holds one file per source layer (params_layer_{i}.safetensors); pass the file or a layer`,
      );
    }
    layer = opts.layer;
    file = join(dir, `params_layer_${layer}.safetensors`);
  } else {
    file = join(dir, GEMMA_SCOPE_2_PARAMS);
  }
  if (layer !== null && type !== null && type !== "clt") {
    badKey(cfgPath, "type", `'clt' for per-layer file ${basename(file)}`, type);
  }

  const affineCfg = cfg.affine_connection;
  if (affineCfg !== undefined && typeof affineCfg !== "boolean") {
    badKey(cfgPath, "affine_connection", "a boolean", affineCfg);
  }
  const source = await openSafetensorsSource(file, "Gemma Scope 2 params");
  try {
    const hasAffine = source.info("affine_skip_connection") !== undefined;
    if (affineCfg === true && !hasAffine) {
      throw new SaeFormatError(
        `${file}: missing tensor 'affine_skip_connection', expected shape [d_in, d_out] because ${cfgPath} has affine_connection: true; found tensors ${
          JSON.stringify(source.names())
        }`,
      );
    }
    if (affineCfg === false && hasAffine) {
      throw new SaeFormatError(
        `${file}: has tensor 'affine_skip_connection' but ${cfgPath} has affine_connection: false; expected no skip connection`,
      );
    }
    // The config width is the total over layers for CLTs; check it only for single SAEs.
    const width = typeof cfg.width === "number" && layer === null ? cfg.width : null;
    const sae = await readJumpRelu(source, {
      names: { wEnc: "w_enc", wDec: "w_dec", bEnc: "b_enc", bDec: "b_dec", threshold: "threshold" },
      what: layer === null
        ? "a Gemma Scope 2 JumpReLU SAE"
        : `source layer ${layer} of a Gemma Scope 2 cross-layer transcoder`,
      configPath: cfgPath,
      width,
      widthFrom: `${cfgPath} key 'width'`,
      skipName: hasAffine ? "affine_skip_connection" : undefined,
      cltLayer: layer ?? undefined,
      onProgress: opts.onProgress,
    });
    sae.format = "gemma-scope-2";
    sae.modelName = typeof cfg.model_name === "string" ? cfg.model_name : null;
    const hookIn = typeof cfg.hf_hook_point_in === "string" ? cfg.hf_hook_point_in : null;
    const hookOut = typeof cfg.hf_hook_point_out === "string" ? cfg.hf_hook_point_out : null;
    const atLayer = (hf: string | null) => {
      const tl = hf === null ? null : gemmaScope2Hook(hf);
      // A CLT config names one hook pattern; the source layer is the file's.
      return tl !== null && layer !== null ? tl.replace(/^blocks\.\d+\./, `blocks.${layer}.`) : tl;
    };
    sae.hookName = atLayer(hookIn);
    const transcoder = type === "transcoder" || type === "clt" || layer !== null ||
      hasAffine || (hookOut !== null && hookIn !== null && hookOut !== hookIn) ||
      sae.kind === "transcoder";
    if (transcoder) {
      sae.kind = "transcoder";
      sae.dOut = sae.dOut ?? sae.dIn;
      sae.hookNameOut = atLayer(hookOut);
    }
    if (layer !== null) {
      const decShape = source.info("w_dec")!.shape;
      sae.crossLayer = { layer, layers: decShape[1] };
    }
    sae.provenance = gemmaScope2Provenance(sae, {
      hookIn,
      hookOut,
      type,
      layer,
      hasAffine,
      file: basename(file),
    });
    return sae;
  } finally {
    source.close();
  }
}

/** Which Gemma Scope 2 rule decided each setting of a loaded SAE or transcoder. */
function gemmaScope2Provenance(
  sae: SaeWeights,
  o: {
    hookIn: string | null;
    hookOut: string | null;
    type: unknown;
    layer: number | null;
    hasAffine: boolean;
    file: string;
  },
): SettingProvenance[] {
  const MAP = "HF module path → TransformerLens hook (the map SAELens's Gemma 3 loader uses)";
  const atFile = o.layer !== null ? `, layer ${o.layer} from ${o.file}` : "";
  const out: SettingProvenance[] = [
    {
      setting: "threshold",
      value: `${o.file} 'threshold'`,
      rule: "latent active when h > threshold, strictly (Gemma Scope 2 tutorial's JumpReLUSAE)",
    },
    {
      setting: "apply_b_dec_to_input",
      value: false,
      rule: "Gemma Scope never subtracts b_dec (SAELens Gemma 3 loader config)",
    },
  ];
  if (o.hookIn !== null) {
    out.push({
      setting: "hook_name",
      value: sae.hookName,
      rule: `from hf_hook_point_in '${o.hookIn}': ${MAP}${atFile}`,
    });
  }
  if (sae.kind === "transcoder") {
    const why = o.layer !== null
      ? `cross-layer transcoder file ${o.file}`
      : o.type === "transcoder"
      ? "config type 'transcoder'"
      : o.hasAffine
      ? "the file holds affine_skip_connection"
      : o.hookOut !== null && o.hookOut !== o.hookIn
      ? "hf_hook_point_out differs from hf_hook_point_in"
      : "w_dec width differs from w_enc's input width";
    out.push({ setting: "kind", value: "transcoder", rule: why });
    if (o.hookOut !== null) {
      out.push({
        setting: "hook_name_out",
        value: sae.hookNameOut ?? null,
        rule: `from hf_hook_point_out '${o.hookOut}': ${MAP}${atFile}`,
      });
    }
  }
  if (o.hasAffine) {
    out.push({
      setting: "skip",
      value: "x @ affine_skip_connection",
      rule: "[d_in, d_out], used untransposed (Gemma Scope 2 tutorial's JumpReLUSAE.forward)",
    });
  }
  if (o.layer !== null) {
    out.push({
      setting: "W_dec",
      value: `w_dec[:, ${o.layer}, :]`,
      rule:
        "a CLT source layer's own output slice (w_dec indexes target layers absolutely; earlier ones are unused)",
    });
  }
  return out;
}
