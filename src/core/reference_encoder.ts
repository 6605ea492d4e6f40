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

/** An SAE whose fields cannot be encoded as given (missing or contradictory parameters). */
export class EncoderConfigError extends TypeError {
  override name = "EncoderConfigError";
}

/** An input (activations, token count, watched latents) of the wrong size or range. */
export class EncoderInputError extends RangeError {
  override name = "EncoderInputError";
}

/**
 * Check an encoder's input: `tokens` a non-negative integer and `x` at least
 * `tokens × dIn` values. Returns `tokens × dIn`; throws
 * {@linkcode EncoderInputError} saying what was expected and found.
 *
 * @example
 * ```ts
 * checkEncodeInput(new Float32Array(8), 2, 4); // 8
 * ```
 */
export function checkEncodeInput(x: Float32Array, tokens: number, dIn: number): number {
  if (!Number.isSafeInteger(tokens) || tokens < 0) {
    throw new EncoderInputError(
      `encode: expected a non-negative integer token count, found ${tokens}`,
    );
  }
  const n = tokens * dIn;
  if (x.length < n) {
    throw new EncoderInputError(
      `encode: expected at least ${tokens} × ${dIn} = ${n} values, found ${x.length}`,
    );
  }
  return n;
}

/** Added to σ (not inside the square root) by SAELens and OpenAI layer_norm. */
export const LAYER_NORM_EPS = 1e-5;

/**
 * Check that `sae` has everything its architecture, kind and normalisation
 * need, with the lengths its dimensions imply. Both encoders call this first,
 * so a bad SAE fails the same way everywhere.
 *
 * @throws {EncoderConfigError} naming the field, what was expected and what was found
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights;
 * assertEncodable(sae); // throws before any work if, e.g., a transcoder subtracts b_dec
 * ```
 */
export function assertEncodable(sae: SaeWeights): void {
  const { dIn, dSae, source } = sae;
  const dOut = saeDOut(sae);
  const len = (field: string, a: ArrayLike<number> | undefined, want: number, shape: string) => {
    if (!a) throw new EncoderConfigError(`${source}: ${sae.architecture} SAE needs ${field}`);
    if (a.length !== want) {
      throw new EncoderConfigError(
        `${source}: ${field} should be ${shape} = ${want} values, found ${a.length}`,
      );
    }
  };
  // The kind decides what dOut must be, so check it before the lengths that depend on it.
  if ((sae.kind ?? "sae") === "sae" && dOut !== dIn) {
    throw new EncoderConfigError(
      `${source}: an SAE reconstructs its input; expected dOut ${dIn}, found ${dOut}`,
    );
  }
  len("wEnc", sae.wEnc, dIn * dSae, `[${dIn}, ${dSae}]`);
  len("bEnc", sae.bEnc, dSae, `[${dSae}]`);
  len("wDec", sae.wDec, dSae * dOut, `[${dSae}, ${dOut}]`);
  len("bDec", sae.bDec, dOut, `[${dOut}]`);
  if (sae.wSkip) len("wSkip", sae.wSkip, dIn * dOut, `[${dIn}, ${dOut}]`);
  if ((sae.kind ?? "sae") === "transcoder" && sae.applyBDecToInput) {
    // SAELens's transcoder config raises on this too (PR #516): b_dec is an output bias.
    throw new EncoderConfigError(
      `${source}: a transcoder never subtracts b_dec from its input; expected applyBDecToInput false, found true`,
    );
  }
  if (sae.normalize === "layer_norm" && dIn < 2) {
    throw new EncoderConfigError(
      `${source}: layer_norm uses the unbiased std; expected dIn ≥ 2, found ${dIn}`,
    );
  }
  switch (sae.architecture) {
    case "standard":
      break;
    case "jumprelu":
      len("threshold", sae.threshold, dSae, `[${dSae}]`);
      break;
    case "topk":
      if (sae.k === undefined || !Number.isInteger(sae.k) || sae.k < 1 || sae.k > dSae) {
        throw new EncoderConfigError(
          `${source}: topk SAE needs an integer k in 1..${dSae}, found ${sae.k}`,
        );
      }
      break;
    case "gated":
      len("gated.bGate", sae.gated?.bGate, dSae, `[${dSae}]`);
      len("gated.rMag", sae.gated?.rMag, dSae, `[${dSae}]`);
      len("gated.bMag", sae.gated?.bMag, dSae, `[${dSae}]`);
      break;
    default:
      throw new EncoderConfigError(
        `${source}: expected architecture standard, jumprelu, topk or gated, found ${
          String((sae as { architecture: unknown }).architecture)
        }`,
      );
  }
}

/**
 * The watched latents as a sorted, duplicate-free index list.
 *
 * @throws {EncoderInputError} when an index is not below `dSae`
 *
 * @example
 * ```ts
 * canonicalWatch(new Uint32Array([5, 1, 5]), 8); // Uint32Array [1, 5]
 * ```
 */
export function canonicalWatch(watch: Uint32Array, dSae: number): Uint32Array {
  const sorted = Uint32Array.from(new Set(watch)).sort();
  for (const i of sorted) {
    if (i >= dSae) {
      throw new EncoderInputError(`watched latent ${i} is out of range: expected < ${dSae}`);
    }
  }
  return sorted;
}

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
