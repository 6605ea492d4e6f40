/**
 * EleutherAI sparsify (formerly `sae`) hookpoint folders: `cfg.json` +
 * `sae.safetensors` (reference sae-formats.md §3), read as sparsify's own
 * code does, **not** as SAELens's `sparsify_disk_loader` converter does:
 * - `encoder.weight [M, d_in]` is an nn.Linear weight → transposed to `wEnc [d_in, M]`;
 * - `W_dec [M, d_in]` already has one row per latent → kept as is;
 * - `b_dec` is subtracted from the input unless `transcode` (a missing key
 *   means false, which reproduces old checkpoints that always subtracted it);
 * - `W_skip [d_in, d_in]` is used as `x @ W_skip^T` → `wSkip = W_skip^T`;
 * - `pre = relu(x' @ encoder.weight^T + encoder.bias)`, then top-k;
 * - every tensor is cast to the dtype of the file's first key in sorted order
 *   (`load_from_disk`'s `reference_dtype`), and a tensor the model lacks fails
 *   (`load_model(strict=True)`).
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import type { SaeWeights, SettingProvenance } from "../core/sae.ts";
import { badKey, readJsonFile, SaeFormatError } from "./errors.ts";
import { openSafetensorsSource, type SaeLoadOptions, WeightReader } from "./weights.ts";

/** File names inside a sparsify hookpoint folder (sparse_coder.py `save_to_disk`). */
export const SPARSIFY_CFG = "cfg.json";
export const SPARSIFY_WEIGHTS = "sae.safetensors";

/** The inference-relevant part of a sparsify `cfg.json`. */
export interface SparsifyConfig {
  dIn: number;
  numLatents: number;
  k: number;
  transcode: boolean;
  skipConnection: boolean;
  /** cfg.json has no `transcode` key (old `sae` checkpoints): the default, false. */
  transcodeAbsent: boolean;
  /** Settings taken from SparseCoderConfig defaults rather than the file. */
  provenance: SettingProvenance[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Interpret a parsed sparsify `cfg.json` (`SparseCoderConfig` + `d_in`).
 *
 * @throws {SaeFormatError} for groupmax or legacy signed SAEs, or a bad key
 *
 * @example
 * ```ts
 * parseSparsifyConfig({ expansion_factor: 32, num_latents: 0, k: 16, d_in: 512 }, "cfg.json").numLatents; // 16384
 * ```
 */
export function parseSparsifyConfig(raw: unknown, source: string): SparsifyConfig {
  if (!isRecord(raw)) {
    throw new SaeFormatError(`${source}: expected a JSON object, found ${JSON.stringify(raw)}`);
  }
  const bad = (key: string, expected: string, found: unknown): never =>
    badKey(source, key, expected, found);
  const int = (key: string, min: number): number => {
    const v = raw[key];
    return typeof v === "number" && Number.isSafeInteger(v) && v >= min
      ? v
      : bad(key, min > 0 ? "a positive integer" : "a non-negative integer", v);
  };
  const activation = raw.activation ?? "topk";
  if (activation === "groupmax") {
    throw new SaeFormatError(
      `${source}: key 'activation': "groupmax" is unsupported (expected "topk"); groupmax SAEs pick one latent per group and are not supported by latentwatch`,
    );
  }
  if (activation !== "topk") bad("activation", "'topk'", activation);
  if (raw.signed === true) {
    throw new SaeFormatError(
      `${source}: key 'signed': true is unsupported (expected false or absent); legacy signed SAEs (June–Aug 2024) keep the top-k by |pre| with its sign and no ReLU, which latentwatch does not implement`,
    );
  }
  const bool = (key: string): boolean => {
    const v = raw[key] ?? false;
    return typeof v === "boolean" ? v : bad(key, "a boolean", v);
  };
  const provenance: SettingProvenance[] = [];
  const dIn = int("d_in", 1);
  // SparseCoderConfig defaults (sparsify/config.py): num_latents 0, expansion_factor 32, k 32.
  let numLatents = raw.num_latents === undefined ? 0 : int("num_latents", 0);
  if (numLatents === 0) {
    const factor = raw.expansion_factor === undefined ? 32 : int("expansion_factor", 1);
    numLatents = dIn * factor;
    provenance.push({
      setting: "num_latents",
      value: numLatents,
      rule: `num_latents 0 or absent: d_in × expansion_factor ${factor}${
        raw.expansion_factor === undefined ? " (default 32)" : ""
      } (sparsify SparseCoder)`,
    });
  }
  let k = 32;
  if (raw.k === undefined) {
    provenance.push({
      setting: "k",
      value: 32,
      rule: "no k key: default 32 (sparsify SparseCoderConfig)",
    });
  } else k = int("k", 1);
  if (k > numLatents) bad("k", `at most the number of latents, ${numLatents}`, k);
  return {
    dIn,
    numLatents,
    k,
    // Old `sae` checkpoints have no `transcode` key and always subtracted b_dec.
    transcode: bool("transcode"),
    transcodeAbsent: raw.transcode === undefined,
    skipConnection: bool("skip_connection"),
    provenance,
  };
}

/**
 * Sparsify hookpoints (module paths relative to `model.base_model`) → the
 * TransformerLens hooks they read and write. `null` when not known.
 *
 * @example
 * ```ts
 * sparsifyHooks("layers.10", false); // { in: "blocks.10.hook_resid_post", out: null }
 * ```
 */
export function sparsifyHooks(
  hookpoint: string,
  transcode: boolean,
): { in: string | null; out: string | null } {
  const layer = /^(?:layers|h|gpt_neox\.layers)\.(\d+)$/.exec(hookpoint);
  // A forward hook on a decoder layer takes outputs[0]: the layer output.
  if (layer) {
    // A transcoder on the layer maps its input (inputs[0]) to its output.
    return transcode
      ? { in: `blocks.${layer[1]}.hook_resid_pre`, out: `blocks.${layer[1]}.hook_resid_post` }
      : { in: `blocks.${layer[1]}.hook_resid_post`, out: null };
  }
  const mlp = /^(?:layers|h)\.(\d+)\.mlp$/.exec(hookpoint);
  if (mlp) {
    // Transcoders map the MLP input (inputs[0], after the pre-MLP norm) to its output.
    return transcode
      ? { in: `blocks.${mlp[1]}.ln2.hook_normalized`, out: `blocks.${mlp[1]}.hook_mlp_out` }
      : { in: `blocks.${mlp[1]}.hook_mlp_out`, out: null };
  }
  const attn = /^(?:layers|h)\.(\d+)\.(?:self_attn|attention|attn)$/.exec(hookpoint);
  if (attn && !transcode) return { in: `blocks.${attn[1]}.hook_attn_out`, out: null };
  return { in: null, out: null };
}

/** Resolve the folder, its cfg.json or its sae.safetensors to the folder. */
function sparsifyFolder(path: string): string {
  const name = basename(path);
  return name === SPARSIFY_CFG || name === SPARSIFY_WEIGHTS ? dirname(path) : path;
}

/**
 * Load a sparsify hookpoint folder (`cfg.json` + `sae.safetensors`) as a
 * TopK SAE or transcoder. The dtype is the tensors' own (the cfg has none).
 * The hookpoint folder name (e.g. `layers.10`, `layers.3.mlp`, or its parent
 * for `seed{n}` folders) gives the hook; the run's `config.json`, when
 * present one level up, gives the model name.
 *
 * @throws {SaeFormatError} naming the file, key or tensor, expected and found
 *
 * @example
 * ```ts
 * const sae = await loadSparsify("sae-llama-3-8b-32x/layers.23");
 * sae.architecture; // "topk"
 * ```
 */
export async function loadSparsify(path: string, opts: SaeLoadOptions = {}): Promise<SaeWeights> {
  const dir = sparsifyFolder(path);
  const cfgPath = join(dir, SPARSIFY_CFG);
  const cfg = parseSparsifyConfig(await readJsonFile(cfgPath, "sparsify config"), cfgPath);
  const { dIn, numLatents: m } = cfg;
  const source = await openSafetensorsSource(join(dir, SPARSIFY_WEIGHTS), "sparsify weights");
  try {
    const provenance = [...cfg.provenance];
    const expected = ["encoder.weight", "encoder.bias", "W_dec", "b_dec", "W_skip"];
    const r: WeightReader = new WeightReader(source, {
      what: cfg.transcode ? "a sparsify transcoder" : "a sparsify SAE",
      configPath: cfgPath,
      wanted: expected,
      onProgress: opts.onProgress,
    });
    // load_model(strict=True): a tensor the model does not have fails the load.
    const stray = source.names().filter((n) => !expected.includes(n));
    if (stray.length > 0) {
      throw new SaeFormatError(
        `${source.path}: tensor '${stray[0]}': expected only ${
          JSON.stringify(expected.slice(0, cfg.skipConnection ? 5 : 4))
        } (sparsify loads with strict=True), found ${JSON.stringify(source.names())}`,
      );
    }
    // load_from_disk builds the model in the dtype of the file's first key
    // (safe_open's keys() are sorted) and load_model casts every tensor to it.
    const first = [...source.names()].sort()[0];
    const refDtype = r.dtype(first);
    const cast = (name: string, v: Float32Array<ArrayBuffer>): Float32Array<ArrayBuffer> => {
      const d = r.dtype(name);
      if (d === refDtype || (refDtype !== "BF16" && refDtype !== "F16")) return v;
      if (refDtype === "BF16") roundToBf16(v);
      else for (let i = 0; i < v.length; i++) v[i] = Math.f16round(v[i]);
      provenance.push({
        setting: `${name} dtype`,
        value: refDtype === "BF16" ? "bfloat16" : "float16",
        rule:
          `stored ${d}, rounded to the dtype of the first key '${first}' (sparsify load_from_disk reference_dtype)`,
      });
      return v;
    };
    const wEnc = cast(
      "encoder.weight",
      await r.f32("encoder.weight", {
        shape: [m, dIn],
        dims: "[num_latents, d_in]",
        // nn.Linear weight: x @ encoder.weight^T, so transpose once into [d_in, M].
        layout: "transposed",
      }),
    );
    const sae: SaeWeights = {
      format: "sparsify",
      architecture: "topk",
      dIn,
      dSae: m,
      hookName: null,
      modelName: null,
      dtype: refDtype === "BF16" ? "bfloat16" : refDtype === "F16" ? "float16" : "float32",
      applyBDecToInput: !cfg.transcode,
      k: cfg.k,
      rescaleActsByDecoderNorm: false,
      wEnc,
      bEnc: cast(
        "encoder.bias",
        await r.f32("encoder.bias", { shape: [m], dims: "[num_latents]" }),
      ),
      // Rows are latents already, the same orientation as ours: never transposed.
      wDec: cast(
        "W_dec",
        await r.f32("W_dec", { shape: [m, dIn], dims: "[num_latents, d_in]" }),
      ),
      bDec: cast("b_dec", await r.f32("b_dec", { shape: [dIn], dims: "[d_in]" })),
      source: dir,
    };
    if (cfg.skipConnection) {
      // forward() adds x @ W_skip^T; the runtime adds x @ wSkip.
      sae.wSkip = cast(
        "W_skip",
        await r.f32("W_skip", {
          shape: [dIn, dIn],
          dims: "[d_in, d_in]",
          layout: "transposed",
        }),
      );
      provenance.push({
        setting: "skip",
        value: "x @ W_skip^T",
        rule: "W_skip transposed at load (sparsify SparseCoder.forward: sae_out += x @ W_skip.mT)",
      });
    } else if (r.has("W_skip")) {
      throw new SaeFormatError(
        `${source.path}: has tensor 'W_skip' but ${cfgPath} has skip_connection false or absent; expected no skip connection`,
      );
    }
    // Seeds live in <hookpoint>/seed{n}.
    const hookDir = /^seed\d+$/.test(basename(dir)) ? dirname(dir) : dir;
    const hooks = sparsifyHooks(basename(hookDir), cfg.transcode);
    sae.hookName = hooks.in;
    if (cfg.transcodeAbsent) {
      provenance.push({
        setting: "apply_b_dec_to_input",
        value: true,
        rule:
          "no 'transcode' key: false (SparseCoderConfig default), so encode subtracts b_dec (sparsify SparseCoder.encode)",
      });
    }
    if (hooks.in !== null) {
      provenance.push({
        setting: "hook_name",
        value: hooks.in,
        rule: `from the hookpoint folder ${basename(hookDir)}: ${
          cfg.transcode ? "the module's input" : "the module's output"
        } (sparsify trainer forward hook)`,
      });
    }
    if (cfg.transcode) {
      // Transcoders assume the same width in and out (b_dec [d_in]).
      sae.kind = "transcoder";
      sae.dOut = dIn;
      sae.hookNameOut = hooks.out;
      if (hooks.out !== null) {
        provenance.push({
          setting: "hook_name_out",
          value: hooks.out,
          rule: `from the hookpoint folder ${
            basename(hookDir)
          }: the module's output (sparsify trainer forward hook)`,
        });
      }
    }
    sae.modelName = await runModelName(dirname(hookDir));
    if (sae.modelName !== null) {
      provenance.push({
        setting: "model_name",
        value: sae.modelName,
        rule: "'model' of the training run's config.json one level up (sparsify TrainConfig)",
      });
    }
    if (provenance.length > 0) sae.provenance = provenance;
    return sae;
  } finally {
    source.close();
  }
}

/** The `model` of the training run's `config.json`, if it is there and readable. */
async function runModelName(runDir: string): Promise<string | null> {
  try {
    const run = JSON.parse(await Deno.readTextFile(join(runDir, "config.json")));
    return isRecord(run) && typeof run.model === "string" ? run.model : null;
  } catch {
    return null; // optional: hookpoint folders are often downloaded alone
  }
}

/**
 * Round float32 values in place to the nearest bfloat16 (ties to even), as
 * torch's `.to(torch.bfloat16)` does.
 *
 * @example
 * ```ts
 * const v = new Float32Array([1 + 2 ** -9]);
 * roundToBf16(v); // v[0] === 1 (halfway, ties to the even mantissa)
 * ```
 */
export function roundToBf16(v: Float32Array): void {
  const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      u[i] = (x | 0x400000) & 0xffff0000; // NaN stays a (quiet) NaN
    } else {
      u[i] = ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
  }
}
