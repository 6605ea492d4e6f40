/**
 * A plain-TypeScript SAE encoder with SAELens semantics, written for
 * clarity, not speed, and independently of the ONNX graph, so the two can
 * check each other. Accumulates in f64.
 *
 * Per token (sae-formats.md §1.4):
 *   1. normalise: `none`; `constant_norm_rescale` `x ← x·√dIn/‖x‖`;
 *      `layer_norm` `x ← (x − μ)/(σ + 1e-5)`, σ the unbiased std
 *   2. `x̃ = x − b_dec` when `applyBDecToInput` (never for transcoders)
 *   3. `standard`  `f = relu(x̃@W_enc + b_enc)`
 *      `jumprelu`  `f = relu(h)·[h > θ]` (strict)
 *      `topk`      `h ← h·‖W_dec[i]‖` if rescaling; keep the k largest (ties: lower index); relu
 *      `gated`     `f = [x̃@W_enc + b_gate > 0] · relu((x̃@W_enc)·exp(r_mag) + b_mag)`
 *
 * @module
 */

import type { Encoder, SaeWeights, SparseLatents } from "./sae.ts";
import { saeDOut } from "./sae.ts";
import {
  assertEncodable,
  canonicalWatch,
  EncoderConfigError,
  EncoderInputError,
} from "./encoder_checks.ts";

/** Added to σ (not inside the square root) by SAELens and OpenAI layer_norm. */
export const LAYER_NORM_EPS = 1e-5;

/**
 * How one token's input was normalised, and how decoding undoes it:
 * `x_n = (x − inShift)·inMul`, and the decoder output becomes `y·outScale + outShift`.
 * `none` is `{0, 1, 1, 0}`.
 */
export interface NormStats {
  inShift: number;
  inMul: number;
  outScale: number;
  outShift: number;
}

/**
 * The normalisation of one raw token `x` (length `dIn`) under `sae.normalize`, in f64.
 * - `constant_norm_rescale`: `inMul = √dIn/‖x‖`, `outScale = ‖x‖/√dIn`. A zero
 *   vector (where SAELens would divide by zero and give NaN) gets `inMul = 0`
 *   and `outScale = 0`: it encodes as 0 and decodes to 0.
 * - `layer_norm`: `inShift = outShift = μ`, `inMul = 1/(σ + 1e-5)`, `outScale = σ`
 *   (SAELens undoes with σ, not σ + eps).
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights;
 * referenceNormStats({ ...sae, normalize: "layer_norm" }, new Float32Array([1, 3])).inShift; // 2
 * ```
 */
export function referenceNormStats(sae: SaeWeights, x: Float32Array): NormStats {
  const d = sae.dIn;
  switch (sae.normalize ?? "none") {
    case "none":
      return { inShift: 0, inMul: 1, outScale: 1, outShift: 0 };
    case "constant_norm_rescale": {
      let sq = 0;
      for (let j = 0; j < d; j++) sq += x[j] * x[j];
      const norm = Math.sqrt(sq);
      if (norm === 0) return { inShift: 0, inMul: 0, outScale: 0, outShift: 0 };
      return { inShift: 0, inMul: Math.sqrt(d) / norm, outScale: norm / Math.sqrt(d), outShift: 0 };
    }
    case "layer_norm": {
      let sum = 0;
      for (let j = 0; j < d; j++) sum += x[j];
      const mu = sum / d;
      let sq = 0;
      for (let j = 0; j < d; j++) sq += (x[j] - mu) ** 2;
      const sigma = Math.sqrt(sq / (d - 1)); // unbiased, as torch.std
      return { inShift: mu, inMul: 1 / (sigma + LAYER_NORM_EPS), outScale: sigma, outShift: mu };
    }
  }
}

/**
 * The encoder's input for one token: `x̃ = N(x) − b_dec?`, in f64.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array;
 * const xt = referenceEncoderInput(sae, x.subarray(0, sae.dIn));
 * ```
 */
export function referenceEncoderInput(sae: SaeWeights, x: Float32Array): Float64Array {
  const { inShift, inMul } = referenceNormStats(sae, x);
  const out = new Float64Array(sae.dIn);
  const subtract = sae.applyBDecToInput && (sae.kind ?? "sae") === "sae";
  for (let j = 0; j < sae.dIn; j++) {
    out[j] = (x[j] - inShift) * inMul - (subtract ? sae.bDec[j] : 0);
  }
  return out;
}

/** `x̃ @ W_enc` without any bias, f64. */
function project(sae: SaeWeights, x: Float32Array): Float64Array {
  const { dIn, dSae } = sae;
  const xt = referenceEncoderInput(sae, x);
  const p = new Float64Array(dSae);
  for (let j = 0; j < dIn; j++) {
    const xj = xt[j];
    if (xj === 0) continue;
    for (let i = 0; i < dSae; i++) p[i] += xj * sae.wEnc[j * dSae + i];
  }
  return p;
}

/** `‖W_dec[i, :]‖₂` for every latent, accumulated in f64. */
export function referenceDecoderNorms(sae: SaeWeights): Float64Array {
  const dOut = saeDOut(sae);
  const norms = new Float64Array(sae.dSae);
  for (let i = 0; i < sae.dSae; i++) {
    let sq = 0;
    for (let j = 0; j < dOut; j++) sq += sae.wDec[i * dOut + j] ** 2;
    norms[i] = Math.sqrt(sq);
  }
  return norms;
}

/**
 * Pre-activations of one token, in f64: `h = x̃ @ W_enc + b_enc`; for TopK with
 * `rescaleActsByDecoderNorm`, `h[i] *= ‖W_dec[i, :]‖₂`; for gated SAEs the
 * magnitude path `(x̃ @ W_enc)·exp(r_mag) + b_mag` (see
 * {@linkcode referenceGatePreActivations} for the gate).
 *
 * @param x the token's raw activation, length `dIn`
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array;
 * const h = referencePreActivations(sae, x.subarray(0, sae.dIn));
 * ```
 */
export function referencePreActivations(sae: SaeWeights, x: Float32Array): Float64Array {
  const h = project(sae, x);
  if (sae.architecture === "gated") {
    const { rMag, bMag } = sae.gated!;
    for (let i = 0; i < sae.dSae; i++) h[i] = h[i] * Math.exp(rMag[i]) + bMag[i];
    return h;
  }
  for (let i = 0; i < sae.dSae; i++) h[i] += sae.bEnc[i];
  if (sae.architecture === "topk" && sae.rescaleActsByDecoderNorm) {
    const norms = referenceDecoderNorms(sae);
    for (let i = 0; i < sae.dSae; i++) h[i] *= norms[i];
  }
  return h;
}

/**
 * Gated SAEs only: the gate pre-activation `x̃ @ W_enc + b_gate` of one token, f64.
 * A latent can fire only where this is `> 0`.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const gatedSae: SaeWeights, x: Float32Array;
 * const gate = referenceGatePreActivations(gatedSae, x.subarray(0, gatedSae.dIn));
 * ```
 */
export function referenceGatePreActivations(sae: SaeWeights, x: Float32Array): Float64Array {
  if (sae.architecture !== "gated") {
    throw new EncoderConfigError(`${sae.source}: expected a gated SAE, found ${sae.architecture}`);
  }
  const g = project(sae, x);
  for (let i = 0; i < sae.dSae; i++) g[i] += sae.gated!.bGate[i];
  return g;
}

/** Dense f (f64) of one token. */
function activate(sae: SaeWeights, x: Float32Array): Float64Array {
  const h = referencePreActivations(sae, x);
  const f = new Float64Array(sae.dSae);
  switch (sae.architecture) {
    case "standard":
      for (let i = 0; i < h.length; i++) f[i] = Math.max(h[i], 0);
      break;
    case "jumprelu":
      // Strict '>' as in SAELens; relu(h) also zeroes anything not above 0.
      for (let i = 0; i < h.length; i++) f[i] = h[i] > sae.threshold![i] ? Math.max(h[i], 0) : 0;
      break;
    case "topk": {
      // Largest first; among equal values the lower index wins (stable rule).
      const top = Array.from(h.keys()).sort((a, b) => h[b] - h[a] || a - b).slice(0, sae.k!);
      for (const i of top) f[i] = Math.max(h[i], 0);
      break;
    }
    case "gated": {
      const gate = referenceGatePreActivations(sae, x);
      for (let i = 0; i < h.length; i++) f[i] = gate[i] > 0 ? Math.max(h[i], 0) : 0;
      break;
    }
  }
  return f;
}

/**
 * Encode `tokens` rows of `x` (`[tokens, dIn]`, row-major) with SAELens
 * semantics and return the nonzero latents of each row, ascending by index.
 * With `watch`, only those latents are reported (a TopK SAE still chooses its
 * top k among all latents first).
 *
 * @throws {EncoderConfigError} see {@linkcode assertEncodable}
 * @throws {EncoderInputError} when `x` is too short or a watched latent is out of range
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array;
 * const [first] = referenceEncode(sae, x, 1);
 * first.indices; // Uint32Array of active latents
 * const watched = referenceEncode(sae, x, 1, new Uint32Array([3, 7]));
 * ```
 */
export function referenceEncode(
  sae: SaeWeights,
  x: Float32Array,
  tokens: number,
  watch?: Uint32Array,
): SparseLatents[] {
  assertEncodable(sae);
  if (!Number.isSafeInteger(tokens) || tokens < 0) {
    throw new EncoderInputError(
      `referenceEncode: expected a non-negative integer token count, found ${tokens}`,
    );
  }
  if (x.length < tokens * sae.dIn) {
    throw new EncoderInputError(
      `referenceEncode: expected at least ${tokens} × ${sae.dIn} = ${
        tokens * sae.dIn
      } values, found ${x.length}`,
    );
  }
  const keep = watch ? canonicalWatch(watch, sae.dSae) : null;
  const out: SparseLatents[] = [];
  for (let t = 0; t < tokens; t++) {
    const f = activate(sae, x.subarray(t * sae.dIn, (t + 1) * sae.dIn));
    const candidates = keep ?? f.keys();
    const active = Array.from(candidates).filter((i) => f[i] !== 0);
    out.push({
      indices: Uint32Array.from(active),
      values: Float32Array.from(active, (i) => f[i]),
    });
  }
  return out;
}

/**
 * {@linkcode referenceEncode} behind the {@linkcode Encoder} interface.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array, tokens: number;
 * const enc = new ReferenceEncoder(sae);
 * const latents = await enc.encode(x, tokens);
 * ```
 */
export class ReferenceEncoder implements Encoder {
  readonly dIn: number;
  readonly dSae: number;
  #sae: SaeWeights;
  #watch: Uint32Array | undefined;

  constructor(sae: SaeWeights, watch?: Uint32Array) {
    assertEncodable(sae);
    this.#sae = sae;
    this.#watch = watch && canonicalWatch(watch, sae.dSae);
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
  }

  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    try {
      return Promise.resolve(referenceEncode(this.#sae, x, tokens, this.#watch));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
