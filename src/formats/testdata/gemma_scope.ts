/**
 * Fixtures of the Gemma Scope tests: weights as Gemma Scope stores them and
 * the official tutorial's JumpReLU SAE computed on them. A fixture module,
 * not a test file.
 *
 * @module
 */
import { add, decode, gaussian, jumpRelu, xW } from "./upstream.ts";

/** The test SAEs' input width. */
export const D_IN = 6;
/** The test SAEs' latent count. */
export const D_SAE = 12;

/** Gemma Scope weights as stored: W_enc [d_in, d_sae], W_dec [d_sae, d_out], float32. */
export function params(seed: number, dOut = D_IN) {
  return {
    W_enc: gaussian(seed, D_IN * D_SAE, 0.6),
    W_dec: gaussian(seed + 1, D_SAE * dOut, 0.5),
    b_enc: gaussian(seed + 2, D_SAE, 0.2),
    // Large: subtracting it from the input (never done for Gemma Scope) would show.
    b_dec: gaussian(seed + 3, dOut, 3),
    threshold: Float32Array.from(gaussian(seed + 4, D_SAE, 0.3), Math.abs),
  };
}

/** The official tutorial JumpReLUSAE: pre = x@W_enc+b_enc; f = [pre>θ]·relu(pre); y = f@W_dec+b_dec (+ x@affine). */
export function tutorial(
  p: ReturnType<typeof params>,
  x: Float32Array,
  tokens: number,
  dOut = D_IN,
  affine?: Float32Array,
) {
  return Array.from({ length: tokens }, (_, t) => {
    const xt = x.subarray(t * D_IN, (t + 1) * D_IN);
    const f = jumpRelu(add(xW(xt, p.W_enc, D_SAE), p.b_enc), p.threshold);
    const y = add(decode(f, p.W_dec, dOut), p.b_dec);
    return { f, y: affine ? add(y, xW(xt, affine, dOut)) : y };
  });
}

/** Four tokens of input. */
export const X = gaussian(77, 4 * D_IN, 1.5);
