/**
 * saprmarks/dictionary_learning trainer folders (sae-formats.md §5):
 * `ae.pt` (a torch state dict, read without executing it) and `config.json`
 * `{"trainer": {dict_class, activation_dim, dict_size, k, lm_name, ...}}`.
 *
 * Each `dict_class` is mapped exactly as its upstream `encode` computes:
 *
 * | dict_class | here | input centring |
 * |---|---|---|
 * | AutoEncoder | standard, `W_enc = encoder.weight^T` | `x − bias` |
 * | AutoEncoderNew | standard | none (`decoder.bias` only added on decode) |
 * | GatedAutoEncoder | gated (`gate_bias`, `r_mag`, `mag_bias`) | `x − decoder_bias` |
 * | JumpReluAutoEncoder | jumprelu, `W_enc` stored `[d, F]` | none |
 * | AutoEncoderTopK | topk with the saved `k` (per-row top-k) | `x − b_dec` |
 * | BatchTopKSAE | jumprelu, scalar `threshold` broadcast | `x − b_dec` |
 * | MatryoshkaBatchTopKSAE | jumprelu, scalar `threshold` broadcast | `x − b_dec` |
 *
 * BatchTopK and Matryoshka compute `a = relu(h)`, `f = a·[a > θ]`, which is
 * `relu(h)·[h > θ]` for any θ (where `h ≤ θ < 0`, `relu(h)` is already 0).
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";
import { SaeFormatError } from "./errors.ts";
import {
  stateDictTensor,
  tensorShape,
  type TorchSaeLoadOptions,
  transpose,
  weightDtype,
} from "./openai.ts";
import {
  isTorchTensor,
  loadTorchCheckpoint,
  type TorchTensor,
  type TorchValue,
} from "./torch_pickle.ts";

/** The dictionary classes latentwatch loads. */
export const DICTIONARY_LEARNING_CLASSES = [
  "AutoEncoder",
  "AutoEncoderNew",
  "GatedAutoEncoder",
  "JumpReluAutoEncoder",
  "AutoEncoderTopK",
  "BatchTopKSAE",
  "MatryoshkaBatchTopKSAE",
] as const;

/** One of {@linkcode DICTIONARY_LEARNING_CLASSES}. */
export type DictionaryLearningClass = typeof DICTIONARY_LEARNING_CLASSES[number];

/** Options for {@linkcode loadDictionaryLearningSae}. */
export interface DictionaryLearningLoadOptions extends TorchSaeLoadOptions {
  /** Overrides `trainer.dict_class` (needed when there is no config). */
  dictClass?: string;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** `config.json` next to `ae.pt`, or null when there is none. */
async function readConfig(path: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new SaeFormatError(`${path}: cannot read the config: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SaeFormatError(`${path}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SaeFormatError(`${path}: expected a JSON object with a "trainer" key`);
  }
  const trainer = (raw as Record<string, unknown>).trainer;
  if (typeof trainer !== "object" || trainer === null || Array.isArray(trainer)) {
    throw new SaeFormatError(
      `${path}: expected a "trainer" object (dictionary_learning config.json), found ${
        JSON.stringify(trainer ?? null)
      }`,
    );
  }
  return trainer as Record<string, unknown>;
}

/** A nested checkpoint's `config` dict as a plain object. */
function mapToRecord(v: TorchValue | undefined): Record<string, unknown> | null {
  if (!(v instanceof Map)) return null;
  const out: Record<string, unknown> = {};
  for (const [k, x] of v) out[k] = x;
  return out;
}

function scalar(t: TorchTensor, name: string, source: string): number {
  if (t.data.length !== 1) {
    throw new SaeFormatError(
      `${source}: '${name}' should be a scalar, found shape [${t.shape}]`,
    );
  }
  return t.data[0];
}

/**
 * Load a dictionary_learning SAE from a trainer folder (`ae.pt` +
 * `config.json`) or an `ae.pt` path, in either the final flat state-dict
 * form or the nested mid-training form `{step, ae, optimizer, config, norm_factor}`.
 * A nested checkpoint's SAE was trained on `x / norm_factor`; its biases and
 * thresholds are multiplied by `norm_factor` here, as dictionary_learning's
 * `scale_biases` does before the final save, so it takes raw activations.
 *
 * @param path a trainer folder or its `ae.pt`
 * @throws {SaeFormatError} for an unknown `dict_class`, a missing config, a
 * tensor whose shape disagrees with the config, or a missing tensor
 * @throws {import("./torch_pickle.ts").TorchPickleRefusedError} when the pickle asks for anything
 * but tensors and dicts
 *
 * @example
 * ```ts
 * const sae = await loadDictionaryLearningSae("saes/resid_post_layer_3/trainer_1");
 * sae.architecture; // e.g. "jumprelu" for a BatchTopKSAE
 * ```
 */
export async function loadDictionaryLearningSae(
  path: string,
  opts: DictionaryLearningLoadOptions = {},
): Promise<SaeWeights> {
  const aePath = (await isDirectory(path)) ? join(path, "ae.pt") : path;
  const cfgPath = join(dirname(aePath), "config.json");
  const ckpt = await loadTorchCheckpoint(aePath);

  // The nested form holds the state dict under "ae" beside training state.
  let sd = ckpt;
  let normFactor = 1;
  let nestedCfg: Record<string, unknown> | null = null;
  const ae = ckpt.get("ae");
  if (ae instanceof Map && (ckpt.has("step") || ckpt.has("optimizer"))) {
    sd = ae;
    nestedCfg = mapToRecord(ckpt.get("config"));
    const nf = ckpt.get("norm_factor");
    if (typeof nf === "number") normFactor = nf;
    else if (isTorchTensor(nf)) normFactor = scalar(nf, "norm_factor", aePath);
    else if (nf !== undefined && nf !== null) {
      throw new SaeFormatError(
        `${aePath}: norm_factor should be a number or null, found ${typeof nf}`,
      );
    }
    if (!(Number.isFinite(normFactor) && normFactor > 0)) {
      throw new SaeFormatError(`${aePath}: norm_factor must be positive, found ${normFactor}`);
    }
  }

  const trainer = (await readConfig(cfgPath)) ?? nestedCfg;
  const dictClass = opts.dictClass ?? trainer?.dict_class;
  if (typeof dictClass !== "string") {
    throw new SaeFormatError(
      `${aePath}: cannot tell the dictionary class: expected trainer.dict_class in ${cfgPath}${
        trainer ? "" : " (not found)"
      }; pass dictClass (one of ${DICTIONARY_LEARNING_CLASSES.join(", ")})`,
    );
  }
  if (!(DICTIONARY_LEARNING_CLASSES as readonly string[]).includes(dictClass)) {
    throw new SaeFormatError(
      `${aePath}: unknown dictionary_learning dict_class ${
        JSON.stringify(dictClass)
      }, expected one of ${DICTIONARY_LEARNING_CLASSES.join(", ")}`,
    );
  }
  const cls = dictClass as DictionaryLearningClass;

  // d and F from the tensors, then checked against the config.
  const [d, F] = cls === "JumpReluAutoEncoder" || cls === "MatryoshkaBatchTopKSAE"
    ? tensorShape(sd, "W_enc", aePath)
    : [...tensorShape(sd, "encoder.weight", aePath)].reverse();
  for (const [key, found] of [["activation_dim", d], ["dict_size", F]] as const) {
    const want = trainer?.[key];
    if (typeof want === "number" && want !== found) {
      throw new SaeFormatError(
        `${aePath}: the weights have ${key} ${found}, but ${cfgPath} says trainer.${key} = ${want}`,
      );
    }
  }
  if (!Number.isSafeInteger(d) || !Number.isSafeInteger(F)) {
    throw new SaeFormatError(`${aePath}: expected a 2-d encoder weight for ${cls}`);
  }
  const t = (name: string, shape: number[], dims: string) =>
    stateDictTensor(sd, name, shape, dims, aePath);
  const linear = () => ({
    enc: t("encoder.weight", [F, d], "[dict_size, activation_dim]"),
    dec: t("decoder.weight", [d, F], "[activation_dim, dict_size]"),
  });

  const base = {
    format: "dictionary_learning",
    dIn: d,
    dSae: F,
    hookName: opts.hookName ?? null,
    modelName: opts.modelName ??
      (typeof trainer?.lm_name === "string" ? trainer.lm_name : null),
    source: aePath,
    kind: "sae" as const,
    normalize: "none" as const,
  };
  let sae: SaeWeights;
  switch (cls) {
    case "AutoEncoder": {
      const { enc, dec } = linear();
      const bias = t("bias", [d], "[activation_dim]");
      const bEnc = t("encoder.bias", [F], "[dict_size]");
      sae = {
        ...base,
        architecture: "standard",
        dtype: weightDtype([enc, dec, bias, bEnc]),
        applyBDecToInput: true, // relu((x − bias) @ We^T + be)
        wEnc: transpose(enc.data, F, d),
        bEnc: bEnc.data,
        wDec: transpose(dec.data, d, F),
        bDec: bias.data,
      };
      break;
    }
    case "AutoEncoderNew": {
      const { enc, dec } = linear();
      const bEnc = t("encoder.bias", [F], "[dict_size]");
      const bDec = t("decoder.bias", [d], "[activation_dim]");
      sae = {
        ...base,
        architecture: "standard",
        dtype: weightDtype([enc, dec, bEnc, bDec]),
        applyBDecToInput: false, // relu(x @ We^T + be): no centring
        wEnc: transpose(enc.data, F, d),
        bEnc: bEnc.data,
        wDec: transpose(dec.data, d, F),
        bDec: bDec.data,
      };
      break;
    }
    case "GatedAutoEncoder": {
      const { enc, dec } = linear();
      const bDec = t("decoder_bias", [d], "[activation_dim]");
      const rMag = t("r_mag", [F], "[dict_size]");
      const bGate = t("gate_bias", [F], "[dict_size]");
      const bMag = t("mag_bias", [F], "[dict_size]");
      sae = {
        ...base,
        architecture: "gated",
        dtype: weightDtype([enc, dec, bDec, rMag, bGate, bMag]),
        applyBDecToInput: true, // e = (x − decoder_bias) @ We^T
        wEnc: transpose(enc.data, F, d),
        bEnc: new Float32Array(F), // unused by gated SAEs
        wDec: transpose(dec.data, d, F),
        bDec: bDec.data,
        gated: { bGate: bGate.data, rMag: rMag.data, bMag: bMag.data },
      };
      break;
    }
    case "JumpReluAutoEncoder": {
      const wEnc = t("W_enc", [d, F], "[activation_dim, dict_size]");
      const bEnc = t("b_enc", [F], "[dict_size]");
      const wDec = t("W_dec", [F, d], "[dict_size, activation_dim]");
      const bDec = t("b_dec", [d], "[activation_dim]");
      const threshold = t("threshold", [F], "[dict_size]");
      sae = {
        ...base,
        architecture: "jumprelu",
        dtype: weightDtype([wEnc, bEnc, wDec, bDec, threshold]),
        applyBDecToInput: false, // h = x @ W_enc + b_enc
        wEnc: wEnc.data, // already [d, F]
        bEnc: bEnc.data,
        wDec: wDec.data,
        bDec: bDec.data,
        threshold: threshold.data,
      };
      break;
    }
    case "AutoEncoderTopK":
    case "BatchTopKSAE": {
      const { enc, dec } = linear();
      const bEnc = t("encoder.bias", [F], "[dict_size]");
      const bDec = t("b_dec", [d], "[activation_dim]");
      const common = {
        ...base,
        dtype: weightDtype([enc, dec, bEnc, bDec]),
        applyBDecToInput: true, // relu((x − b_dec) @ We^T + be)
        wEnc: transpose(enc.data, F, d),
        bEnc: bEnc.data,
        wDec: transpose(dec.data, d, F),
        bDec: bDec.data,
      };
      if (cls === "AutoEncoderTopK") {
        sae = { ...common, architecture: "topk", k: savedK(sd, trainer, F, aePath, cfgPath) };
      } else {
        sae = { ...common, architecture: "jumprelu", threshold: broadcastThreshold(sd, F, aePath) };
      }
      break;
    }
    case "MatryoshkaBatchTopKSAE": {
      const wEnc = t("W_enc", [d, F], "[activation_dim, dict_size]");
      const bEnc = t("b_enc", [F], "[dict_size]");
      const wDec = t("W_dec", [F, d], "[dict_size, activation_dim]");
      const bDec = t("b_dec", [d], "[activation_dim]");
      const groups = sd.get("group_sizes");
      if (isTorchTensor(groups)) {
        const total = groups.data.reduce((a, b) => a + b, 0);
        if (total !== F) {
          throw new SaeFormatError(
            `${aePath}: group_sizes [${groups.data}] sum to ${total}, expected dict_size ${F}`,
          );
        }
      }
      // All groups are active by default, so no latent is masked.
      sae = {
        ...base,
        architecture: "jumprelu",
        dtype: weightDtype([wEnc, bEnc, wDec, bDec]),
        applyBDecToInput: true, // relu((x − b_dec) @ W_enc + b_enc)
        wEnc: wEnc.data,
        bEnc: bEnc.data,
        wDec: wDec.data,
        bDec: bDec.data,
        threshold: broadcastThreshold(sd, F, aePath),
      };
      break;
    }
  }
  if (normFactor !== 1) scaleBiases(sae, normFactor);
  return sae;
}

/** The saved top-k `k` (a 0-d int tensor), checked against `trainer.k`. */
function savedK(
  sd: Map<string, TorchValue>,
  trainer: Record<string, unknown> | null,
  F: number,
  source: string,
  cfgPath: string,
): number {
  const kv = sd.get("k");
  const k = isTorchTensor(kv) ? scalar(kv, "k", source) : trainer?.k;
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > F) {
    throw new SaeFormatError(
      `${source}: AutoEncoderTopK needs 'k' in 1..${F}, found ${JSON.stringify(k ?? null)}`,
    );
  }
  if (typeof trainer?.k === "number" && trainer.k !== k) {
    throw new SaeFormatError(
      `${source}: the checkpoint has k = ${k}, but ${cfgPath} says trainer.k = ${trainer.k}`,
    );
  }
  return k;
}

/** BatchTopK's single inference threshold θ, as a per-latent `[F]` array. */
function broadcastThreshold(sd: Map<string, TorchValue>, F: number, source: string): Float32Array {
  const th = sd.get("threshold");
  if (!isTorchTensor(th)) {
    throw new SaeFormatError(
      `${source}: missing tensor 'threshold', expected a scalar (the BatchTopK inference threshold)`,
    );
  }
  return new Float32Array(F).fill(scalar(th, "threshold", source));
}

/**
 * dictionary_learning `scale_biases(s)`: multiply every bias and threshold
 * (not weights, not `r_mag`), so `encode'(x) = s·encode(x / s)`.
 */
function scaleBiases(sae: SaeWeights, s: number): void {
  const mul = (a: Float32Array) => Float32Array.from(a, (v) => v * s);
  sae.bEnc = mul(sae.bEnc);
  sae.bDec = mul(sae.bDec);
  if (sae.threshold) sae.threshold = mul(sae.threshold);
  if (sae.gated) {
    sae.gated = { ...sae.gated, bGate: mul(sae.gated.bGate), bMag: mul(sae.gated.bMag) };
  }
}
