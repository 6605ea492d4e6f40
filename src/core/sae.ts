/**
 * The internal, format-independent representation of a trained SAE, and the
 * encoder contract every runtime (onnxruntime, the plain-TypeScript reference)
 * implements. Pure: imports nothing outside `src/core`.
 *
 * @module
 */

/** Activation functions supported by the runtime. */
export type SaeArchitecture = "standard" | "jumprelu" | "topk";

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
}

/** The nonzero latents of one token, sorted by ascending index. */
export interface SparseLatents {
  indices: Uint32Array;
  values: Float32Array;
}

/** Encodes batches of activations into sparse latents. */
export interface Encoder {
  readonly dIn: number;
  readonly dSae: number;
  /**
   * Encode `tokens` rows of `x` (`[tokens, dIn]`, row-major) and return one
   * {@linkcode SparseLatents} per row.
   */
  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]>;
  /** Release native resources. */
  close(): Promise<void>;
}
