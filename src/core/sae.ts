/**
 * The internal, format-independent representation of a trained SAE, and the
 * encoder contract every runtime (onnxruntime, the plain-TypeScript reference)
 * implements. Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import type { LatentRows } from "./latent_rows.ts";

/**
 * Activation functions supported by the runtime.
 * - `standard`: `f = relu(h)`
 * - `jumprelu`: `f = relu(h)·[h > threshold]` (BatchTopK and Matryoshka SAEs are saved this way)
 * - `topk`: keep the k largest `h` (ties: lower index), then relu
 * - `gated`: `f = [x̃@W_enc + b_gate > 0] · relu((x̃@W_enc)·exp(r_mag) + b_mag)`
 */
export type SaeArchitecture = "standard" | "jumprelu" | "topk" | "gated";

/** An SAE reconstructs its input; a transcoder predicts another activation (`dOut`). */
export type SaeKind = "sae" | "transcoder";

/**
 * Per-token input normalisation applied before encoding and undone after
 * decoding (SAELens `normalize_activations`; OpenAI's TopK SAEs use `layer_norm`).
 * - `constant_norm_rescale`: `c = √dIn / ‖x‖₂`, `x ← c·x`, output `÷ c`
 * - `layer_norm`: `x ← (x − μ) / (σ + 1e-5)` with the unbiased σ, output `·σ + μ`
 * A constant scale (`expected_average_only_in`) is folded into the weights at load.
 */
export type InputNormalization = "none" | "constant_norm_rescale" | "layer_norm";

/** Every upstream SAE format latentwatch reads (for `--format` and monitor `format:`). */
export const SAE_FORMATS = [
  "saelens",
  "gemma-scope",
  "gemma-scope-2",
  "sparsify",
  "openai",
  "dictionary-learning",
] as const;

/** One of {@linkcode SAE_FORMATS}. */
export type SaeFormatName = (typeof SAE_FORMATS)[number];

/** Element types weights can be stored in on disk. */
export type WeightDtype = "float32" | "float16" | "bfloat16";

/**
 * Every SAE, whatever its upstream format, normalised to one layout.
 * Matrices are dense, row-major Float32Array (f16/bf16 weights are widened
 * exactly at load time).
 */
export interface SaeWeights {
  /** Upstream format the weights were read from, e.g. `"saelens"`. */
  format: string;
  architecture: SaeArchitecture;
  dIn: number;
  dSae: number;
  /** TransformerLens hook name the SAE was trained on, when known. */
  hookName: string | null;
  modelName: string | null;
  /** Element type of the tensors on disk. */
  dtype: WeightDtype;
  /** Subtract `bDec` from the input before encoding (SAELens `apply_b_dec_to_input`). */
  applyBDecToInput: boolean;
  /** TopK only: number of latents kept per token. */
  k?: number;
  /**
   * TopK only (SAELens `rescale_acts_by_decoder_norm`): multiply `h[i]` by
   * `‖wDec[i, :]‖₂` before choosing the top k.
   */
  rescaleActsByDecoderNorm?: boolean;
  /** `[dIn, dSae]`, so that `h = x @ wEnc + bEnc`. */
  wEnc: Float32Array;
  /** `[dSae]` */
  bEnc: Float32Array;
  /** `[dSae, dIn]` */
  wDec: Float32Array;
  /** `[dIn]` */
  bDec: Float32Array;
  /** JumpReLU only: `[dSae]`, a latent is active when `h > threshold` (strict). */
  threshold?: Float32Array;
  /** Where the weights were loaded from (a folder or file path). */
  source: string;
  /** `"sae"` when absent. Transcoders never subtract `bDec` from their input. */
  kind?: SaeKind;
  /** Width of the decoder output; `dIn` when absent (SAEs). `wDec` is `[dSae, dOut]`, `bDec` `[dOut]`. */
  dOut?: number;
  /** `"none"` when absent. */
  normalize?: InputNormalization;
  /** Gated SAEs: gate bias, magnitude log-scale and magnitude bias, each `[dSae]` (`bEnc` unused, zeros). */
  gated?: { bGate: Float32Array; rMag: Float32Array; bMag: Float32Array };
  /** Skip connection `[dIn, dOut]`: the output gains `x_raw @ wSkip` (oriented at load). */
  wSkip?: Float32Array;
  /** Transcoders: the hook the output is written to. */
  hookNameOut?: string | null;
  /** Cross-layer transcoder source layer: `wDec` holds only this layer's own output slice. */
  crossLayer?: { layer: number; layers: number };
  /** `modelId/sourceId` on Neuronpedia, when known (labels line up only with that SAE). */
  neuronpediaId?: string | null;
  /** Human labels by latent index (Neuronpedia explanations). */
  labels?: ReadonlyMap<number, string>;
  /**
   * SAELens `hook_head_index`: the SAE reads one attention head's slice
   * (`d_in = d_head`) of the hook, which the caller selects before encoding.
   */
  hookHeadIndex?: number;
  /**
   * Which upstream rule decided each setting that the file did not state
   * plainly (legacy keys, defaults), in the order they were applied.
   */
  provenance?: SettingProvenance[];
}

/** One setting a loader derived from an upstream rule rather than read as is. */
export interface SettingProvenance {
  /** The setting, e.g. `"k"` or `"normalize_activations"`. */
  setting: string;
  /** The value it ended up with. */
  value: string | number | boolean | null;
  /** Where it came from and which upstream rule said so, e.g. `"from activation_fn_kwargs.k (SAELens pre-6.0 rule, handle_pre_6_0_config)"`. */
  rule: string;
}

/** Decoder output width of `sae` (`dIn` for SAEs). */
export function saeDOut(sae: SaeWeights): number {
  return sae.dOut ?? sae.dIn;
}

/**
 * A linear probe: `n` directions over the activation, each with a bias,
 * scored raw (`x·w + b`) or through a logistic (`σ(x·w + b)`). Probes run as
 * an encoder beside the SAEs; policies read score i as latent i.
 */
export interface LinearProbe {
  kind: "probe";
  dIn: number;
  /** Number of directions (scores per token). */
  n: number;
  /** `[n, dIn]` */
  directions: Float32Array;
  /** `[n]` */
  bias: Float32Array;
  link: "raw" | "logistic";
  /** Optional names of the scores. */
  names?: string[];
  source: string;
}

/** The nonzero latents of one token, sorted by ascending index. */
export interface SparseLatents {
  indices: Uint32Array;
  values: Float32Array;
}

/**
 * A token with no active latents, shared by encoders that return many of
 * them (a watched encoder's tokens mostly fire none of its latents): frozen,
 * and its arrays are empty, so no reader can change it.
 *
 * @example
 * ```ts
 * import { NO_LATENTS } from "./sae.ts";
 * NO_LATENTS.indices.length; // 0
 * ```
 */
export const NO_LATENTS: Readonly<SparseLatents> = Object.freeze({
  indices: new Uint32Array(0),
  values: new Float32Array(0),
});

/**
 * Encodes batches of activations into sparse latents. A watched-latent
 * encoder reports only its watched latents (still by their SAE index).
 */
export interface Encoder {
  readonly dIn: number;
  readonly dSae: number;
  /**
   * Encode `tokens` rows of `x` (`[tokens, dIn]`, row-major) and return one
   * {@linkcode SparseLatents} per row.
   */
  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]>;
  /**
   * The same rows as `encode`, in one structure for the whole batch (no
   * object per token): encoders on the serving path offer it, and the
   * pipeline prefers it. Import the type from `./latent_rows.ts`.
   */
  encodeRows?(x: Float32Array, tokens: number): Promise<LatentRows>;
  /** Release native resources. */
  close(): Promise<void>;
}
