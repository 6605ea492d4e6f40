/**
 * Gemma Scope 2 SAEs and transcoders (Google DeepMind, for Gemma 3), see the
 * reference sae-formats.md §2: `config.json` + `params.safetensors` with
 * lower-case keys, `affine_skip_connection [d_in, d_out]` on `_affine`
 * transcoders, and cross-layer transcoders stored one source layer per
 * `params_layer_{i}.safetensors`.
 *
 * JumpReLU with **no** `b_dec` subtraction and no normalisation:
 * `h = x @ W_enc + b_enc; f = relu(h)·[h > threshold]`.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { SaeWeights, SettingProvenance } from "../core/sae.ts";
import { badKey, readJsonFile, SaeFormatError } from "./errors.ts";
import { readJumpRelu } from "./gemma_scope_jumprelu.ts";
import { openSafetensorsSource, type SaeLoadOptions } from "./weights.ts";
/** Gemma Scope 2 file names. */
export const GEMMA_SCOPE_2_CONFIG = "config.json";
export const GEMMA_SCOPE_2_PARAMS = "params.safetensors";
/** Cross-layer transcoder files: one per source layer. */
export const GEMMA_SCOPE_2_CLT_PARAMS = /^params_layer_(\d+)\.safetensors$/;

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
