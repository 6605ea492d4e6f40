/**
 * OpenAI `sparse_autoencoder` checkpoints (GPT-2 small, sae-formats.md §4):
 * `{location}[_v4|_v5_32k|_v5_128k]/autoencoders/{layer}.pt`, a torch state
 * dict with `pre_bias [d]`, `encoder.weight [n, d]` (an `nn.Linear` weight),
 * `latent_bias [n]`, `decoder.weight [d, n]`, and the non-tensor entries
 * `activation` ("TopK" | "ReLU") and `activation_state_dict` (`{k, postact_fn}`).
 *
 * Mapped the way SAELens converts them: `W_enc = encoder.weight^T`,
 * `W_dec = decoder.weight^T`, `b_dec = pre_bias` subtracted from the input,
 * `b_enc = latent_bias`; TopK models layer-normalise their input
 * (`normalize = activation == "TopK"` upstream).
 *
 * @module
 */

import { basename, dirname } from "node:path";
import type { SaeWeights, WeightDtype } from "../core/sae.ts";
import { SaeFormatError } from "./saelens.ts";
import {
  isTorchTensor,
  loadTorchCheckpoint,
  type TorchDtype,
  type TorchTensor,
  type TorchValue,
} from "./torch_pickle.ts";

/** Options shared by the PyTorch-checkpoint SAE loaders. */
export interface TorchSaeLoadOptions {
  /** TransformerLens hook the SAE reads; inferred from the path when possible. */
  hookName?: string | null;
  /** Model the SAE was trained on. */
  modelName?: string | null;
}

/**
 * The tensor `name` of a state dict, checked against `shape`.
 *
 * @throws {SaeFormatError} naming the file, the tensor, the expected and the found shape
 *
 * @example
 * ```ts
 * const enc = stateDictTensor(sd, "encoder.weight", [n, d], "[n_latents, d]", "6.pt");
 * ```
 */
export function stateDictTensor(
  sd: Map<string, TorchValue>,
  name: string,
  shape: number[],
  dims: string,
  source: string,
): TorchTensor {
  const t = sd.get(name);
  if (!isTorchTensor(t)) {
    throw new SaeFormatError(
      `${source}: ${
        t === undefined ? "missing tensor" : "expected a tensor for"
      } '${name}', expected shape ${dims} = [${shape}]; found keys ${
        JSON.stringify([...sd.keys()])
      }`,
    );
  }
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new SaeFormatError(
      `${source}: tensor '${name}' has shape [${t.shape}], expected ${dims} = [${shape}]`,
    );
  }
  if (!isFloat(t.dtype)) {
    throw new SaeFormatError(
      `${source}: tensor '${name}' has dtype ${t.dtype}, expected a float dtype`,
    );
  }
  return t;
}

/** The shape of tensor `name`, or an error saying it is missing. */
export function tensorShape(sd: Map<string, TorchValue>, name: string, source: string): number[] {
  const t = sd.get(name);
  if (!isTorchTensor(t)) {
    throw new SaeFormatError(
      `${source}: missing tensor '${name}'; found keys ${JSON.stringify([...sd.keys()])}`,
    );
  }
  return t.shape;
}

function isFloat(d: TorchDtype): boolean {
  return d === "float32" || d === "float16" || d === "bfloat16" || d === "float64";
}

/** `[rows, cols]` row-major to `[cols, rows]` (how `nn.Linear` weights become `x @ W` matrices). */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

/** The on-disk dtype of a set of tensors, as the SAE records it. */
export function weightDtype(tensors: TorchTensor[]): WeightDtype {
  if (tensors.some((t) => t.dtype === "bfloat16")) return "bfloat16";
  if (tensors.some((t) => t.dtype === "float16")) return "float16";
  return "float32";
}

/** OpenAI location folder → TransformerLens hook (openai/sparse_autoencoder paths.py, README). */
const LOCATION_HOOKS: Record<string, (layer: number) => string> = {
  mlp_post_act: (l) => `blocks.${l}.mlp.hook_post`,
  resid_delta_attn: (l) => `blocks.${l}.hook_attn_out`,
  resid_post_attn: (l) => `blocks.${l}.hook_resid_mid`,
  resid_delta_mlp: (l) => `blocks.${l}.hook_mlp_out`,
  resid_post_mlp: (l) => `blocks.${l}.hook_resid_post`,
};

/** The hook implied by `<location>[_v…]/autoencoders/<layer>.pt`, or null. */
function hookFromPath(path: string): string | null {
  const m = /^(\d+)\.pt$/.exec(basename(path));
  const folder = basename(dirname(dirname(path))).replace(/_v\d+(_\d+k)?$/, "");
  if (!m || basename(dirname(path)) !== "autoencoders" || !Object.hasOwn(LOCATION_HOOKS, folder)) {
    return null;
  }
  return LOCATION_HOOKS[folder](Number(m[1]));
}

/**
 * Load an OpenAI `sparse_autoencoder` checkpoint (`{layer}.pt`) without
 * executing anything from it.
 *
 * @param path the `.pt` file
 * @throws {SaeFormatError} for a missing or misshapen tensor, or an activation other than TopK/ReLU
 * @throws {import("./torch_pickle.ts").TorchPickleRefusedError} when the pickle asks for anything
 * but tensors and dicts
 *
 * @example
 * ```ts
 * const sae = await loadOpenAiSae("v5_32k/resid_post_mlp_v5_32k/autoencoders/8.pt");
 * sae.architecture; // "topk", with k = 32 and normalize "layer_norm"
 * ```
 */
export async function loadOpenAiSae(
  path: string,
  opts: TorchSaeLoadOptions = {},
): Promise<SaeWeights> {
  const sd = await loadTorchCheckpoint(path);
  const nShape = tensorShape(sd, "latent_bias", path);
  const dShape = tensorShape(sd, "pre_bias", path);
  if (nShape.length !== 1 || dShape.length !== 1) {
    throw new SaeFormatError(
      `${path}: expected 1-d 'pre_bias' [d] and 'latent_bias' [n_latents], found [${dShape}] and [${nShape}]`,
    );
  }
  const [d] = dShape;
  const [n] = nShape;
  const preBias = stateDictTensor(sd, "pre_bias", [d], "[d]", path);
  const latentBias = stateDictTensor(sd, "latent_bias", [n], "[n_latents]", path);
  const enc = stateDictTensor(sd, "encoder.weight", [n, d], "[n_latents, d]", path);
  const dec = stateDictTensor(sd, "decoder.weight", [d, n], "[d, n_latents]", path);

  const activation = sd.get("activation");
  let arch: { architecture: "topk"; k: number } | { architecture: "standard" };
  if (activation === "TopK") {
    const st = sd.get("activation_state_dict");
    if (!(st instanceof Map)) {
      throw new SaeFormatError(
        `${path}: activation "TopK" needs 'activation_state_dict' {k, postact_fn}, found ${
          st === undefined ? "none" : typeof st
        }`,
      );
    }
    const kv = st.get("k");
    const k = isTorchTensor(kv) && kv.data.length === 1 ? kv.data[0] : kv;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > n) {
      throw new SaeFormatError(
        `${path}: activation_state_dict.k must be an integer in 1..${n}, found ${
          JSON.stringify(k)
        }`,
      );
    }
    const post = st.get("postact_fn") ?? "ReLU";
    if (post !== "ReLU") {
      throw new SaeFormatError(
        `${path}: TopK postact_fn ${
          JSON.stringify(post)
        } is not supported, expected "ReLU" (latentwatch applies relu to the kept values)`,
      );
    }
    arch = { architecture: "topk", k };
  } else if (activation === "ReLU") {
    arch = { architecture: "standard" };
  } else {
    throw new SaeFormatError(
      `${path}: activation ${
        JSON.stringify(activation ?? null)
      } is not supported, expected "TopK" or "ReLU" (an "Identity" autoencoder has no sparse latents to watch)`,
    );
  }

  return {
    format: "openai",
    ...arch,
    dIn: d,
    dSae: n,
    hookName: opts.hookName !== undefined ? opts.hookName : hookFromPath(path),
    modelName: opts.modelName ?? null,
    dtype: weightDtype([enc, dec, preBias, latentBias]),
    // pre_bias is subtracted from the input and added back to the output (model.py).
    applyBDecToInput: true,
    wEnc: transpose(enc.data, n, d), // encoder.weight [n, d] → [d, n]
    bEnc: latentBias.data,
    wDec: transpose(dec.data, d, n), // decoder.weight [d, n] → [n, d]
    bDec: preBias.data,
    source: path,
    kind: "sae",
    // Upstream: normalize = (activation == "TopK"), a layer norm with the
    // unbiased std and eps added to σ.
    normalize: arch.architecture === "topk" ? "layer_norm" : "none",
  };
}
