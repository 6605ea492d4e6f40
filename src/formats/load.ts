/**
 * One entry point for every SAE format latentwatch reads: detect the format
 * of a downloaded file or folder and load it into {@linkcode SaeWeights}.
 *
 * Detection rules, first match wins (a folder is inspected by the files it
 * holds; a file by its name, then by its folder):
 * - `params.npz` or any `*.npz` file, or a folder holding `params.npz` → `gemma-scope`
 * - `config.json` with `params.safetensors` or `params_layer_{i}.safetensors` → `gemma-scope-2`
 * - `cfg.json` + `sae_weights.safetensors` → `saelens`
 * - `cfg.json` + `sae.safetensors` → `sparsify`
 * - `ae.pt` (with or without its `config.json`) → `dictionary-learning`
 * - any other `*.pt` file, or a folder holding exactly one → `openai`
 * - a `cfg.json` without a weights file: SAELens keys (`d_sae`,
 *   `architecture`, `hook_name`, `metadata`) → `saelens`; sparsify keys
 *   (`expansion_factor`, `num_latents`) → `sparsify` (the loader then names
 *   the missing weights file)
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";
import { loadDictionaryLearningSae } from "./dictionary_learning.ts";
import { GEMMA_SCOPE_NPZ, loadGemmaScope } from "./gemma_scope.ts";
import {
  GEMMA_SCOPE_2_CLT_PARAMS,
  GEMMA_SCOPE_2_CONFIG,
  GEMMA_SCOPE_2_PARAMS,
  loadGemmaScope2,
} from "./gemma_scope_2.ts";
import { loadOpenAiSae } from "./openai.ts";
import { SaeFormatError } from "./errors.ts";
import { loadSaeLens, SAELENS_CFG, SAELENS_WEIGHTS } from "./saelens.ts";
import { type LoadProgress } from "./weights.ts";
import { loadSparsify, SPARSIFY_CFG, SPARSIFY_WEIGHTS } from "./sparsify.ts";

import { SAE_FORMATS, type SaeFormatName } from "../core/sae.ts";
export { SAE_FORMATS, type SaeFormatName };

/** Options for {@linkcode loadSae}. */
export interface LoadSaeOptions {
  /** Skip detection and read this format. */
  format?: SaeFormatName;
  /** SAELens `expected_average_only_in`: the norm scaling factor to fold in. */
  scalingFactor?: number;
  /** Gemma Scope 2 cross-layer transcoders given as a folder: the source layer. */
  layer?: number;
  /** Progress while the weights are read: stored bytes done of total, and the tensor. */
  onProgress?: LoadProgress;
}

/** The names in folder `dir`, or null when it is not a readable folder. */
async function listFolder(dir: string): Promise<Set<string> | null> {
  try {
    const names = new Set<string>();
    for await (const e of Deno.readDir(dir)) names.add(e.name);
    return names;
  } catch {
    return null;
  }
}

/** Classify a cfg.json by its keys: SAELens and sparsify name different things. */
async function cfgKeysFormat(cfgPath: string): Promise<SaeFormatName | null> {
  try {
    const raw = JSON.parse(await Deno.readTextFile(cfgPath));
    if (typeof raw !== "object" || raw === null) return null;
    if (["d_sae", "architecture", "hook_name", "hook_point", "metadata"].some((k) => k in raw)) {
      return "saelens";
    }
    if (["expansion_factor", "num_latents"].some((k) => k in raw)) return "sparsify";
  } catch {
    // Unreadable: fall through to "not detected".
  }
  return null;
}

/** Detect by the files a folder holds; null when nothing matches. */
async function detectFolder(dir: string, names: Set<string>): Promise<SaeFormatName | null> {
  if (names.has(GEMMA_SCOPE_NPZ)) return "gemma-scope";
  if (
    names.has(GEMMA_SCOPE_2_CONFIG) &&
    (names.has(GEMMA_SCOPE_2_PARAMS) || [...names].some((n) => GEMMA_SCOPE_2_CLT_PARAMS.test(n)))
  ) {
    return "gemma-scope-2";
  }
  if (names.has(SAELENS_CFG) && names.has(SAELENS_WEIGHTS)) return "saelens";
  if (names.has(SPARSIFY_CFG) && names.has(SPARSIFY_WEIGHTS)) return "sparsify";
  if (names.has("ae.pt")) return "dictionary-learning";
  const pts = [...names].filter((n) => n.endsWith(".pt"));
  if (pts.length === 1) return "openai";
  if (names.has(SAELENS_CFG)) return await cfgKeysFormat(join(dir, SAELENS_CFG));
  return null;
}

const LOOKED_FOR = [
  `${GEMMA_SCOPE_NPZ} or *.npz (gemma-scope)`,
  `${GEMMA_SCOPE_2_CONFIG} + ${GEMMA_SCOPE_2_PARAMS} or params_layer_{i}.safetensors (gemma-scope-2)`,
  `${SAELENS_CFG} + ${SAELENS_WEIGHTS} (saelens)`,
  `${SPARSIFY_CFG} + ${SPARSIFY_WEIGHTS} (sparsify)`,
  `ae.pt (dictionary-learning)`,
  `one *.pt checkpoint (openai)`,
];

/**
 * Detect the format of an SAE file or folder from its file names and, where
 * names are ambiguous, its config keys (rules in the module doc).
 *
 * @throws {SaeFormatError} listing what was looked for when nothing matches
 *
 * @example
 * ```ts
 * await detectSaeFormat("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71"); // "gemma-scope"
 * ```
 */
export async function detectSaeFormat(path: string): Promise<SaeFormatName> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    throw new SaeFormatError(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  let found: SaeFormatName | null = null;
  let listed: Set<string> | null = null;
  if (stat.isDirectory) {
    listed = await listFolder(path);
    if (listed) found = await detectFolder(path, listed);
  } else {
    const name = basename(path);
    if (name.endsWith(".npz")) found = "gemma-scope";
    else if (name === GEMMA_SCOPE_2_PARAMS || GEMMA_SCOPE_2_CLT_PARAMS.test(name)) {
      found = "gemma-scope-2";
    } else if (name === SPARSIFY_WEIGHTS) found = "sparsify";
    else if (name === SAELENS_WEIGHTS) found = "saelens";
    else if (name === "ae.pt") found = "dictionary-learning";
    else if (name.endsWith(".pt")) found = "openai";
    else if (name === SAELENS_CFG || name === GEMMA_SCOPE_2_CONFIG) {
      // Config files are shared by several formats: decide by the folder.
      const siblings = await listFolder(dirname(path));
      if (siblings) found = await detectFolder(dirname(path), siblings);
    }
  }
  if (found) return found;
  const seen = listed ? ` Found in the folder: ${JSON.stringify([...listed].sort())}.` : "";
  throw new SaeFormatError(
    `${path}: cannot tell the SAE format. Looked for: ${
      LOOKED_FOR.join("; ")
    }.${seen} Pass --format with one of ${SAE_FORMATS.join(", ")} to choose.`,
  );
}

/** An OpenAI path given as a folder holding one `.pt` checkpoint → that file. */
async function singleCheckpoint(path: string): Promise<string> {
  const names = await listFolder(path);
  if (names === null) return path; // a file (or missing: the loader names it)
  const pts = [...names].filter((n) => n.endsWith(".pt"));
  if (pts.length !== 1) {
    throw new SaeFormatError(
      `${path}: expected one .pt checkpoint in the folder, found ${
        JSON.stringify(pts.sort())
      }; pass the file`,
    );
  }
  return join(path, pts[0]);
}

/**
 * Load an SAE or transcoder in any supported format, detected unless
 * `opts.format` says which.
 *
 * @throws {SaeFormatError} when the format is not detected or the files are invalid
 *
 * @example
 * ```ts
 * const sae = await loadSae("saes/gemma-scope-2-1b-pt/resid_post/layer_22_width_16k_l0_medium", {
 *   onProgress: (done, total, phase) => console.error(`${phase}: ${done}/${total}`),
 * });
 * ```
 */
export async function loadSae(path: string, opts: LoadSaeOptions = {}): Promise<SaeWeights> {
  const format = opts.format ?? await detectSaeFormat(path);
  const common = { scalingFactor: opts.scalingFactor, onProgress: opts.onProgress };
  switch (format) {
    case "saelens":
      return await loadSaeLens(path, common);
    case "gemma-scope":
      return await loadGemmaScope(path, common);
    case "gemma-scope-2":
      return await loadGemmaScope2(path, { ...common, layer: opts.layer });
    case "sparsify":
      return await loadSparsify(path, common);
    case "openai":
    case "dictionary-learning": {
      // Pickled checkpoints are read whole; report start and end only.
      opts.onProgress?.(0, 1, basename(path));
      const sae = format === "openai"
        ? await loadOpenAiSae(await singleCheckpoint(path))
        : await loadDictionaryLearningSae(path);
      opts.onProgress?.(1, 1, basename(path));
      return sae;
    }
    default:
      throw new SaeFormatError(
        `unknown SAE format ${JSON.stringify(format)}; expected one of ${SAE_FORMATS.join(", ")}`,
      );
  }
}
