/**
 * A plain-TypeScript SAE encoder with SAELens semantics, written for
 * clarity, not speed, and independently of the ONNX graph, so the two can
 * check each other. Accumulates in f64.
 *
 * @module
 */

import type { Encoder, SaeWeights, SparseLatents } from "./sae.ts";

/**
 * Pre-activations of one token: `h = (x − b_dec?) @ W_enc + b_enc`, and for
 * TopK with `rescaleActsByDecoderNorm`, `h[i] *= ‖W_dec[i, :]‖₂`. In f64.
 *
 * @param x the token's activation, length `dIn`
 *
 * @example
 * ```ts
 * const h = referencePreActivations(sae, x.subarray(0, sae.dIn));
 * ```
 */
export function referencePreActivations(sae: SaeWeights, x: Float32Array): Float64Array {
  const { dIn, dSae } = sae;
  const h = new Float64Array(dSae);
  for (let i = 0; i < dSae; i++) h[i] = sae.bEnc[i];
  for (let j = 0; j < dIn; j++) {
    const xj = sae.applyBDecToInput ? x[j] - sae.bDec[j] : x[j];
    for (let i = 0; i < dSae; i++) h[i] += xj * sae.wEnc[j * dSae + i];
  }
  if (sae.architecture === "topk" && sae.rescaleActsByDecoderNorm) {
    for (let i = 0; i < dSae; i++) {
      let sq = 0;
      for (let j = 0; j < dIn; j++) sq += sae.wDec[i * dIn + j] ** 2;
      h[i] *= Math.sqrt(sq);
    }
  }
  return h;
}

/** The latent indices that survive the activation function, ascending. */
function activeLatents(sae: SaeWeights, h: Float64Array): number[] {
  const all = Array.from(h.keys());
  switch (sae.architecture) {
    case "standard":
      return all.filter((i) => h[i] > 0);
    case "jumprelu": {
      const threshold = sae.threshold;
      if (!threshold) throw new TypeError(`${sae.source}: jumprelu SAE has no threshold`);
      // Strict '>' as in SAELens; relu(h) also zeroes anything not above 0.
      return all.filter((i) => h[i] > threshold[i] && h[i] > 0);
    }
    case "topk": {
      const k = sae.k;
      if (k === undefined) throw new TypeError(`${sae.source}: topk SAE has no k`);
      // Largest first; among equal values the lower index wins (stable rule).
      const top = all.sort((a, b) => h[b] - h[a] || a - b).slice(0, k);
      return top.filter((i) => h[i] > 0).sort((a, b) => a - b);
    }
    case "gated":
      throw new TypeError(`${sae.source}: gated SAEs are not supported by this encoder yet`);
  }
}

/**
 * Encode `tokens` rows of `x` (`[tokens, dIn]`, row-major) with SAELens
 * semantics and return the nonzero latents of each row, ascending by index.
 *
 * @example
 * ```ts
 * const [first] = referenceEncode(sae, x, 1);
 * first.indices; // Uint32Array of active latents
 * ```
 */
export function referenceEncode(sae: SaeWeights, x: Float32Array, tokens: number): SparseLatents[] {
  if (x.length < tokens * sae.dIn) {
    throw new RangeError(
      `referenceEncode: expected at least ${tokens} × ${sae.dIn} = ${
        tokens * sae.dIn
      } values, found ${x.length}`,
    );
  }
  const out: SparseLatents[] = [];
  for (let t = 0; t < tokens; t++) {
    const h = referencePreActivations(sae, x.subarray(t * sae.dIn, (t + 1) * sae.dIn));
    const active = activeLatents(sae, h);
    out.push({
      indices: Uint32Array.from(active),
      values: Float32Array.from(active, (i) => h[i]),
    });
  }
  return out;
}

/**
 * {@linkcode referenceEncode} behind the {@linkcode Encoder} interface.
 *
 * @example
 * ```ts
 * const enc = new ReferenceEncoder(sae);
 * const latents = await enc.encode(x, tokens);
 * ```
 */
export class ReferenceEncoder implements Encoder {
  readonly dIn: number;
  readonly dSae: number;
  #sae: SaeWeights;

  constructor(sae: SaeWeights) {
    this.#sae = sae;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
  }

  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    return Promise.resolve(referenceEncode(this.#sae, x, tokens));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
