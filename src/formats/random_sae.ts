/**
 * Deterministic, plausible random SAEs for tests, the demo and the bench.
 *
 * @module
 */

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../core/dtype.ts";
import { Rng } from "../core/random.ts";
import type { InputNormalization, SaeArchitecture, SaeWeights, WeightDtype } from "../core/sae.ts";

/** Options for {@linkcode randomSae}. */
export interface RandomSaeOptions {
  architecture: SaeArchitecture;
  dIn: number;
  dSae: number;
  /** TopK only; defaults to `clamp(dSae / 4, 1, 32)`. */
  k?: number;
  seed: number;
  /** Values are rounded to this dtype so a saved copy reloads bit-identical. Default float32. */
  dtype?: WeightDtype;
  /** TopK only; also spreads the decoder row norms over [0.5, 1.5] so rescaling matters. */
  rescaleActsByDecoderNorm?: boolean;
  /** Default true. */
  applyBDecToInput?: boolean;
  hookName?: string | null;
  modelName?: string | null;
  /** Make a transcoder with this output width (`bDec` and `wDec` get `dOut` columns). */
  dOut?: number;
  /** Add a skip connection `wSkip [dIn, dOut]` (transcoders; sparsify SAEs may have one too). */
  skip?: boolean;
  normalize?: InputNormalization;
}

function round(values: Float32Array<ArrayBuffer>, dtype: WeightDtype): Float32Array {
  if (dtype === "float16") return f16ToF32(f32ToF16(values), values);
  if (dtype === "bfloat16") return bf16ToF32(f32ToBf16(values), values);
  return values;
}

/**
 * A random SAE (or transcoder, with `dOut`) with the shape of a trained one. Decoder rows have norm near 1;
 * encoder columns are the decoder rows plus independent noise (so a
 * transposition bug shows); on standard-normal input `h` is roughly
 * `N(b_enc, 1)`, so about 45% of standard latents fire and JumpReLU thresholds
 * drawn from [0.3, 1.3] let 10-40% through.
 *
 * @example
 * ```ts
 * const sae = randomSae({ architecture: "jumprelu", dIn: 64, dSae: 256, seed: 7 });
 * sae.threshold?.length; // 256
 * ```
 */
export function randomSae(opts: RandomSaeOptions): SaeWeights {
  const { architecture, dIn, dSae, seed } = opts;
  const dtype = opts.dtype ?? "float32";
  const rng = new Rng(seed);
  const rescale = architecture === "topk" && (opts.rescaleActsByDecoderNorm ?? false);

  // SAEs draw exactly as before transcoders existed, so seeds keep their weights.
  const dOut = opts.dOut ?? dIn;
  const wDec = new Float32Array(dSae * dOut);
  const wEnc = new Float32Array(dIn * dSae);
  const noise = 0.6 / Math.sqrt(dIn);
  for (let i = 0; i < dSae; i++) {
    const dir = rng.unitVector(dIn);
    const norm = rescale ? 0.5 + rng.uniform() : 0.9 + 0.2 * rng.uniform();
    for (let j = 0; j < dIn; j++) {
      if (dOut === dIn) wDec[i * dIn + j] = dir[j] * norm;
      wEnc[j * dSae + i] = 0.8 * dir[j] + noise * rng.gaussian();
    }
  }
  const bEnc = new Float32Array(dSae);
  for (let i = 0; i < dSae; i++) bEnc[i] = -0.1 + 0.05 * rng.gaussian();
  const bDec = new Float32Array(dOut);
  rng.fillGaussian(bDec, 0.1);
  if (dOut !== dIn) {
    // A transcoder's decoder maps to another space: independent unit-ish rows.
    for (let i = 0; i < dSae; i++) wDec.set(rng.unitVector(dOut), i * dOut);
  }

  const sae: SaeWeights = {
    format: "random",
    architecture,
    dIn,
    dSae,
    hookName: opts.hookName === undefined ? "blocks.0.hook_resid_pre" : opts.hookName,
    modelName: opts.modelName === undefined ? "random" : opts.modelName,
    dtype,
    applyBDecToInput: opts.dOut === undefined ? (opts.applyBDecToInput ?? true) : false,
    wEnc: round(wEnc, dtype),
    bEnc: round(bEnc, dtype),
    wDec: round(wDec, dtype),
    bDec: round(bDec, dtype),
    source: `random:${architecture}:${dIn}x${dSae}:seed=${seed}`,
  };
  if (architecture === "jumprelu") {
    const threshold = new Float32Array(dSae);
    for (let i = 0; i < dSae; i++) threshold[i] = 0.3 + rng.uniform();
    sae.threshold = round(threshold, dtype);
  }
  if (architecture === "topk") {
    sae.k = opts.k ?? Math.max(1, Math.min(32, Math.floor(dSae / 4)));
    sae.rescaleActsByDecoderNorm = rescale;
  }
  if (architecture === "gated") {
    // b_enc is unused by gated SAEs (SAELens stores none); the gate and
    // magnitude paths get their own biases, and r_mag small log-scales.
    sae.bEnc = new Float32Array(dSae);
    const bGate = new Float32Array(dSae);
    const rMag = new Float32Array(dSae);
    const bMag = new Float32Array(dSae);
    for (let i = 0; i < dSae; i++) {
      bGate[i] = -0.1 + 0.05 * rng.gaussian();
      rMag[i] = 0.3 * rng.gaussian();
      bMag[i] = 0.1 * rng.gaussian();
    }
    sae.gated = { bGate: round(bGate, dtype), rMag: round(rMag, dtype), bMag: round(bMag, dtype) };
  }
  if (opts.dOut !== undefined) {
    sae.kind = "transcoder";
    sae.dOut = dOut;
    sae.hookNameOut = "blocks.0.hook_mlp_out";
  }
  if (opts.skip) {
    const wSkip = new Float32Array(dIn * dOut);
    rng.fillGaussian(wSkip, 0.5 / Math.sqrt(dIn));
    sae.wSkip = round(wSkip, dtype);
  }
  if (opts.normalize && opts.normalize !== "none") sae.normalize = opts.normalize;
  return sae;
}
