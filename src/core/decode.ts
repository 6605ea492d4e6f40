/**
 * Plain-TypeScript decoding and reconstruction metrics (SAELens semantics,
 * f64 accumulation), and the linear-probe reference. Independent of the ONNX
 * path, like {@linkcode referenceEncode}, so `sae eval` numbers can be checked
 * by hand.
 *
 *   y = f @ W_dec + b_dec          (TopK with rescaleActsByDecoderNorm: f[i] ÷ ‖W_dec[i]‖ first)
 *   SAEs:        y ← y·outScale + outShift   (undo layer_norm / constant_norm_rescale)
 *   transcoders: no de-normalisation (SAELens `Transcoder.decode`)
 *   skip:        y += x_raw @ W_skip   (the raw, un-normalised input)
 *
 * @module
 */

import { referenceDecoderNorms, referenceEncode, referenceNormStats } from "./reference_encoder.ts";
import { assertEncodable, EncoderInputError } from "./encoder_checks.ts";
import type { LinearProbe, SaeWeights, SparseLatents } from "./sae.ts";
import { saeDOut } from "./sae.ts";

/**
 * Decode one {@linkcode SparseLatents} per token back to the activation space:
 * returns `[T, dOut]` row-major, `T = latents.length`.
 *
 * @param xRaw the raw input the latents were encoded from (`[T, dIn]`): it sets
 *   the de-normalisation of each token and feeds the skip connection
 * @throws {EncoderInputError} when `xRaw` is shorter than `T·dIn` or a latent index is ≥ dSae
 *
 * @example
 * ```ts
 * import { referenceEncode } from "./reference_encoder.ts";
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array, tokens: number;
 * const latents = referenceEncode(sae, x, tokens);
 * const y = referenceDecode(sae, latents, x); // Float32Array, tokens × dOut
 * ```
 */
export function referenceDecode(
  sae: SaeWeights,
  latents: SparseLatents[],
  xRaw: Float32Array,
): Float32Array {
  assertEncodable(sae);
  const { dIn, dSae } = sae;
  const dOut = saeDOut(sae);
  const tokens = latents.length;
  if (xRaw.length < tokens * dIn) {
    throw new EncoderInputError(
      `referenceDecode: expected at least ${tokens} × ${dIn} = ${
        tokens * dIn
      } input values, found ${xRaw.length}`,
    );
  }
  const transcoder = (sae.kind ?? "sae") === "transcoder";
  const norms = sae.architecture === "topk" && sae.rescaleActsByDecoderNorm
    ? referenceDecoderNorms(sae)
    : null;
  const out = new Float32Array(tokens * dOut);
  const y = new Float64Array(dOut);
  for (let t = 0; t < tokens; t++) {
    const x = xRaw.subarray(t * dIn, (t + 1) * dIn);
    for (let o = 0; o < dOut; o++) y[o] = sae.bDec[o];
    const { indices, values } = latents[t];
    for (let p = 0; p < indices.length; p++) {
      const i = indices[p];
      if (i >= dSae) {
        throw new EncoderInputError(
          `referenceDecode: token ${t}: expected latent indices < ${dSae}, found ${i}`,
        );
      }
      // The encoder multiplied h by the norm before choosing; decode divides it back out.
      const v = norms ? values[p] / norms[i] : values[p];
      for (let o = 0; o < dOut; o++) y[o] += v * sae.wDec[i * dOut + o];
    }
    if (!transcoder) {
      const { outScale, outShift } = referenceNormStats(sae, x);
      for (let o = 0; o < dOut; o++) y[o] = y[o] * outScale + outShift;
    }
    if (sae.wSkip) {
      for (let j = 0; j < dIn; j++) {
        const xj = x[j];
        for (let o = 0; o < dOut; o++) y[o] += xj * sae.wSkip[j * dOut + o];
      }
    }
    out.set(y, t * dOut);
  }
  return out;
}

/** What {@linkcode evaluateReconstruction} reports. */
export interface ReconstructionReport {
  tokens: number;
  /** Mean squared error per element: `Σ‖y − ŷ‖² / (tokens·dOut)`. */
  mse: number;
  /**
   * Fraction of variance unexplained: `Σ‖y − ŷ‖² / Σ‖y − ȳ‖²`, ȳ the
   * per-dimension mean of the target over tokens. When the target has no
   * variance (one token, or identical rows) it is 0 for a perfect
   * reconstruction and `Infinity` otherwise.
   */
  fvu: number;
  /** Mean number of nonzero latents per token. */
  meanL0: number;
  /** Number of latents that are nonzero on no token of this input. */
  deadLatents: number;
  dSae: number;
}

/**
 * Reconstruction quality of `latents` (one per token, e.g. from an encoder)
 * against `target`, which defaults to the input for SAEs and is required for
 * transcoders (they predict another activation).
 *
 * @throws {EncoderInputError} when sizes disagree, there are no tokens, or a
 *   transcoder is given no target
 *
 * @example
 * ```ts
 * import type { Encoder, SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, encoder: Encoder, x: Float32Array, tokens: number;
 * const latents = await encoder.encode(x, tokens);
 * const { mse, fvu, meanL0, deadLatents } = evaluateReconstruction(sae, x, tokens, latents);
 * ```
 */
export function evaluateReconstruction(
  sae: SaeWeights,
  xRaw: Float32Array,
  tokens: number,
  latents: SparseLatents[],
  target?: Float32Array,
): ReconstructionReport {
  const dOut = saeDOut(sae);
  if (!Number.isSafeInteger(tokens) || tokens < 1) {
    throw new EncoderInputError(
      `evaluateReconstruction: expected at least 1 token, found ${tokens}`,
    );
  }
  if (latents.length !== tokens) {
    throw new EncoderInputError(
      `evaluateReconstruction: expected ${tokens} latent rows, found ${latents.length}`,
    );
  }
  if (!target) {
    if ((sae.kind ?? "sae") === "transcoder") {
      throw new EncoderInputError(
        `evaluateReconstruction: ${sae.source} is a transcoder; expected a target activation (its output), found none`,
      );
    }
    target = xRaw;
  }
  if (target.length < tokens * dOut) {
    throw new EncoderInputError(
      `evaluateReconstruction: expected a target of ${tokens} × ${dOut} = ${
        tokens * dOut
      } values, found ${target.length}`,
    );
  }
  const yHat = referenceDecode(sae, latents, xRaw);

  const mean = new Float64Array(dOut);
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < dOut; o++) mean[o] += target[t * dOut + o];
  }
  for (let o = 0; o < dOut; o++) mean[o] /= tokens;
  let sse = 0, sst = 0;
  for (let t = 0; t < tokens; t++) {
    for (let o = 0; o < dOut; o++) {
      const y = target[t * dOut + o];
      sse += (y - yHat[t * dOut + o]) ** 2;
      sst += (y - mean[o]) ** 2;
    }
  }

  const alive = new Uint8Array(sae.dSae);
  let l0 = 0;
  for (const { indices, values } of latents) {
    for (let p = 0; p < indices.length; p++) {
      if (values[p] !== 0) {
        alive[indices[p]] = 1;
        l0++;
      }
    }
  }
  let dead = 0;
  for (const a of alive) dead += 1 - a;

  return {
    tokens,
    mse: sse / (tokens * dOut),
    fvu: sst > 0 ? sse / sst : sse === 0 ? 0 : Infinity,
    meanL0: l0 / tokens,
    deadLatents: dead,
    dSae: sae.dSae,
  };
}

/**
 * Encode with {@linkcode referenceEncode} and evaluate, in one call.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights, x: Float32Array, tokens: number;
 * const report = referenceEvaluate(sae, x, tokens);
 * ```
 */
export function referenceEvaluate(
  sae: SaeWeights,
  xRaw: Float32Array,
  tokens: number,
  target?: Float32Array,
): ReconstructionReport {
  return evaluateReconstruction(sae, xRaw, tokens, referenceEncode(sae, xRaw, tokens), target);
}

/**
 * Scores of a linear probe for each token: index `i` is direction `i`, value
 * `x·w_i + b_i`, or `σ(x·w_i + b_i)` for a logistic link. Every direction is
 * reported, zero scores included, so a policy can threshold any of them.
 *
 * @throws {EncoderInputError} when `x` is shorter than `tokens·dIn` or the probe's arrays disagree with `n`/`dIn`
 *
 * @example
 * ```ts
 * import type { LinearProbe } from "./sae.ts";
 * declare const probe: LinearProbe, x: Float32Array;
 * const [scores] = referenceProbe(probe, x, 1);
 * scores.values[0]; // direction 0's score for token 0
 * ```
 */
export function referenceProbe(
  probe: LinearProbe,
  x: Float32Array,
  tokens: number,
): SparseLatents[] {
  const { dIn, n } = probe;
  if (probe.directions.length !== n * dIn || probe.bias.length !== n) {
    throw new EncoderInputError(
      `${probe.source}: expected directions [${n}, ${dIn}] and bias [${n}], found ${probe.directions.length} and ${probe.bias.length} values`,
    );
  }
  if (x.length < tokens * dIn) {
    throw new EncoderInputError(
      `referenceProbe: expected at least ${tokens} × ${dIn} = ${
        tokens * dIn
      } values, found ${x.length}`,
    );
  }
  const out: SparseLatents[] = [];
  for (let t = 0; t < tokens; t++) {
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let s = probe.bias[i];
      for (let j = 0; j < dIn; j++) s += x[t * dIn + j] * probe.directions[i * dIn + j];
      values[i] = probe.link === "logistic" ? 1 / (1 + Math.exp(-s)) : s;
    }
    out.push({ indices: Uint32Array.from({ length: n }, (_, i) => i), values });
  }
  return out;
}
