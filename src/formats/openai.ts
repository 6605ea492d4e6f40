/**
 * OpenAI `sparse_autoencoder` checkpoints (GPT-2 small, sae-formats.md §4):
 * `{location}[_v4|_v5_32k|_v5_128k]/autoencoders/{layer}.pt`, a torch state
 * dict with `pre_bias [d]`, `encoder.weight [n, d]` (an `nn.Linear` weight),
 * `latent_bias [n]`, `decoder.weight [d, n]`, and the non-tensor entries
 * `activation` ("TopK" | "ReLU", ReLU when absent as `from_state_dict` defaults it) and
 * `activation_state_dict` (`{k, postact_fn}`, both required for TopK).
 *
 * Mapped the way model.py's `Autoencoder` computes: `W_enc = encoder.weight^T`,
 * `W_dec = decoder.weight^T`, `b_dec = pre_bias` subtracted from the input,
 * `b_enc = latent_bias`; TopK models layer-normalise their input
 * (`normalize = activation == "TopK"` upstream).
 *
 * @module
 */

import { basename, dirname } from "node:path";
import type { SaeWeights, SettingProvenance, WeightDtype } from "../core/sae.ts";
import { SaeFormatError } from "./errors.ts";
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
 * import type { TorchValue } from "./torch_pickle.ts";
 * declare const sd: Map<string, TorchValue>, n: number, d: number;
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
function hookFromPath(path: string): { hook: string; location: string } | null {
  const m = /^(\d+)\.pt$/.exec(basename(path));
  const location = basename(dirname(dirname(path)));
  const folder = location.replace(/_v\d+(_\d+k)?$/, "");
  if (!m || basename(dirname(path)) !== "autoencoders" || !Object.hasOwn(LOCATION_HOOKS, folder)) {
    return null;
  }
  return { hook: LOCATION_HOOKS[folder](Number(m[1])), location };
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

  const provenance: SettingProvenance[] = [];
  // Autoencoder.from_state_dict: state_dict.pop("activation", "ReLU").
  let activation = sd.get("activation");
  if (activation === undefined) {
    activation = "ReLU";
    provenance.push({
      setting: "activation",
      value: "ReLU",
      rule: "no 'activation' entry: ReLU (OpenAI model.py Autoencoder.from_state_dict default)",
    });
  }
  let arch: { architecture: "topk"; k: number } | { architecture: "standard" };
  if (activation === "TopK") {
    const st = sd.get("activation_state_dict");
    if (!(st instanceof Map)) {
      throw new SaeFormatError(
        `${path}: key 'activation_state_dict': expected {k, postact_fn} for activation "TopK", found ${
          st === undefined ? "none" : typeof st
        }`,
      );
    }
    const kv = st.get("k");
    const k = isTorchTensor(kv) && kv.data.length === 1 ? kv.data[0] : kv;
    if (typeof k !== "number" || !Number.isInteger(k) || k < 1 || k > n) {
      throw new SaeFormatError(
        `${path}: key 'activation_state_dict.k': expected an integer in 1..${n}, found ${
          k === undefined ? "none" : JSON.stringify(k)
        }`,
      );
    }
    // TopK.from_state_dict reads state_dict["postact_fn"]: required upstream.
    const post = st.get("postact_fn");
    if (post !== "ReLU") {
      throw new SaeFormatError(
        `${path}: key 'activation_state_dict.postact_fn': expected "ReLU", found ${
          post === undefined ? "none (TopK.from_state_dict requires it)" : JSON.stringify(post)
        }${
          post === "Identity"
            ? " (keeps negative top-k values; latentwatch applies relu to the kept values)"
            : ""
        }`,
      );
    }
    arch = { architecture: "topk", k };
    provenance.push({
      setting: "k",
      value: k,
      rule: "from activation_state_dict.k (OpenAI TopK rule, TopK.from_state_dict)",
    });
  } else if (activation === "ReLU") {
    arch = { architecture: "standard" };
  } else {
    // Deviation: from_state_dict falls back to ReLU for an unknown name; we refuse it.
    throw new SaeFormatError(
      `${path}: key 'activation': expected "TopK" or "ReLU", found ${JSON.stringify(activation)}${
        activation === "Identity"
          ? " (an Identity autoencoder has no sparse latents to watch)"
          : " (upstream would silently treat an unknown name as ReLU)"
      }`,
    );
  }
  const normalize = arch.architecture === "topk" ? "layer_norm" : "none";
  provenance.push({
    setting: "normalize",
    value: normalize,
    rule: `activation ${activation}: ${
      normalize === "layer_norm" ? "" : "no "
    }layer norm of the input (OpenAI model.py: normalize = activation == "TopK")`,
  });
  let hookName: string | null;
  if (opts.hookName !== undefined) hookName = opts.hookName;
  else {
    const hook = hookFromPath(path);
    hookName = hook?.hook ?? null;
    if (hook) {
      provenance.push({
        setting: "hook_name",
        value: hook.hook,
        rule: `from the location folder ${hook.location} and ${
          basename(path)
        } (OpenAI README transformer_lens_loc table)`,
      });
    }
  }
  let modelName = opts.modelName ?? null;
  if (opts.modelName === undefined && path.split(/[\\/]+/).includes("gpt2-small")) {
    modelName = "gpt2-small";
    provenance.push({
      setting: "model_name",
      value: modelName,
      rule: "from the gpt2-small folder of the release layout (OpenAI paths.py)",
    });
  }

  return {
    format: "openai",
    ...arch,
    dIn: d,
    dSae: n,
    hookName,
    modelName,
    dtype: weightDtype([enc, dec, preBias, latentBias]),
    // pre_bias is subtracted from the input and added back to the output (model.py).
    applyBDecToInput: true,
    wEnc: transpose(enc.data, n, d), // encoder.weight [n, d] → [d, n]
    bEnc: latentBias.data,
    wDec: transpose(dec.data, d, n), // decoder.weight [d, n] → [n, d]
    bDec: preBias.data,
    source: path,
    kind: "sae",
    // A layer norm with the unbiased std and eps added to σ (model.py LN).
    normalize,
    provenance,
  };
}
