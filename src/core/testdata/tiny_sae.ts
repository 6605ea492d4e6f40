/**
 * A hand-computed SAE shared by the encoder tests (a fixture module, not a
 * test file, so importing it registers no tests).
 *
 * d_in = 2, d_sae = 3.
 *   W_enc = [[1, -1, 0.5],      (row j = input dim j)
 *            [2,  0, -1 ]]
 *   b_enc = [0.5, 1.25, -1], b_dec = [1, -1]
 *   W_dec = [[3, 4], [0, 0.5], [1, 0]]  → row norms [5, 0.5, 1]
 *
 * x = [2, 0], x − b_dec = [1, 1]:
 *   h0 = 1·1 + 1·2 + 0.5    = 3.5
 *   h1 = 1·(−1) + 1·0 + 1.25 = 0.25
 *   h2 = 1·0.5 + 1·(−1) − 1  = −1.5
 *
 * @module
 */
import type { SaeWeights } from "../sae.ts";

/** The tiny SAE above, with any fields replaced by `over`. */
export function tiny(over: Partial<SaeWeights> = {}): SaeWeights {
  return {
    format: "test",
    architecture: "standard",
    dIn: 2,
    dSae: 3,
    hookName: null,
    modelName: null,
    dtype: "float32",
    applyBDecToInput: true,
    wEnc: new Float32Array([1, -1, 0.5, 2, 0, -1]),
    bEnc: new Float32Array([0.5, 1.25, -1]),
    wDec: new Float32Array([3, 4, 0, 0.5, 1, 0]),
    bDec: new Float32Array([1, -1]),
    source: "tiny",
    ...over,
  };
}

/**
 * The tiny SAE made for top-k ties: W_enc = [[1, 1, 0], [0, 0, 1]], no
 * biases, no b_dec, so h = [x0, x0, x1] and latents 0 and 1 always tie.
 */
export function tinyTies(k: number): SaeWeights {
  return tiny({
    architecture: "topk",
    k,
    applyBDecToInput: false,
    wEnc: new Float32Array([1, 1, 0, 0, 0, 1]),
    bEnc: new Float32Array(3),
  });
}

/**
 * The tiny SAE as a gated SAE: it shares W_enc and b_dec, and adds
 *   b_gate = [−2, 0.5, 1], r_mag = [ln 2, 0, 0] (exp → [2, 1, 1]), b_mag = [−1, 5, 0.25].
 *
 * x = [2, 0]:  x̃ = [1, 1], x̃@W_enc = [3, −1, −0.5]
 *   gate = [3 − 2, −1 + 0.5, −0.5 + 1] = [1, −0.5, 0.5] → open [1, 0, 1]
 *   mag  = relu([3·2 − 1, −1·1 + 5, −0.5·1 + 0.25]) = relu([5, 4, −0.25]) = [5, 4, 0]
 *   f    = [5, 0, 0]  (latent 1: magnitude 4 but gate closed; latent 2: gate open, magnitude 0)
 * x = [−1, 2]: x̃ = [−2, 3], x̃@W_enc = [−2 + 6, 2 + 0, −1 − 3] = [4, 2, −4]
 *   gate = [2, 2.5, −3] → open [1, 1, 0]
 *   mag  = relu([4·2 − 1, 2 + 5, −4 + 0.25]) = [7, 7, 0]
 *   f    = [7, 7, 0]
 */
export function tinyGated(over: Partial<SaeWeights> = {}): SaeWeights {
  return tiny({
    architecture: "gated",
    bEnc: new Float32Array(3),
    gated: {
      bGate: new Float32Array([-2, 0.5, 1]),
      rMag: new Float32Array([Math.log(2), 0, 0]),
      bMag: new Float32Array([-1, 5, 0.25]),
    },
    ...over,
  });
}

/** `1 / (1 + 1e-5)`: the layer_norm scale when σ = 1 (eps is added to σ). */
export const LN_S = 1 / (1 + 1e-5);

/**
 * A layer-normed SAE, d_in = 3, d_sae = 2:
 *   W_enc = [[−1, 0], [0, 1], [1, 1]], b_enc = [0, 2], b_dec = [0, 1, 0]
 *   W_dec = [[1, 0, 0], [0, 0, 1]]
 *
 * x = [1, 2, 3]: μ = 2, x − μ = [−1, 0, 1], unbiased σ = √((1 + 0 + 1)/2) = 1,
 *   x_n = [−s, 0, s] with s = 1/(1 + 1e-5) = LN_S; x̃ = x_n − b_dec = [−s, −1, s]
 *   h = [s + s, −1 + s] + [0, 2] = [2s, 1 + s] → f = [2s, 1 + s]
 *   decode: f@W_dec + b_dec = [2s, 1, 1 + s]; undo ·σ + μ = [2s + 2, 3, 3 + s]
 * x = [5, 5, 5]: μ = 5, σ = 0, x_n = 0/(0 + 1e-5) = [0, 0, 0]; x̃ = [0, −1, 0]
 *   h = [0, −1] + [0, 2] = [0, 1] → f = [0, 1] (relu(0) is not a firing latent)
 *   decode: [0, 0, 1] + [0, 1, 0] = [0, 1, 1]; undo ·0 + 5 = [5, 5, 5] (perfect)
 */
export function tinyLayerNorm(over: Partial<SaeWeights> = {}): SaeWeights {
  return tiny({
    dIn: 3,
    dSae: 2,
    normalize: "layer_norm",
    wEnc: new Float32Array([-1, 0, 0, 1, 1, 1]),
    bEnc: new Float32Array([0, 2]),
    wDec: new Float32Array([1, 0, 0, 0, 0, 1]),
    bDec: new Float32Array([0, 1, 0]),
    ...over,
  });
}

/**
 * The tiny SAE with `constant_norm_rescale` (c = √2/‖x‖):
 * x = [2, 2]: ‖x‖ = 2√2, c = 1/2, x_n = [1, 1], x̃ = [0, 2]
 *   h = [0 + 4 + 0.5, 0 + 0 + 1.25, 0 − 2 − 1] = [4.5, 1.25, −3] → f = [4.5, 1.25, 0]
 *   decode: 4.5·[3, 4] + 1.25·[0, 0.5] + [1, −1] = [14.5, 17.625]; ÷c → [29, 35.25]
 * x = [−3, 3]: ‖x‖ = 3√2, c = 1/3, x_n = [−1, 1], x̃ = [−2, 2]
 *   h = [−2 + 4 + 0.5, 2 + 0 + 1.25, −1 − 2 − 1] = [2.5, 3.25, −4] → f = [2.5, 3.25, 0]
 *   decode: [7.5, 10] + [0, 1.625] + [1, −1] = [8.5, 10.625]; ÷c → [25.5, 31.875]
 * x = [0, 0]: c is taken as 0 (SAELens: NaN), x_n = [0, 0], x̃ = [−1, 1]
 *   h = [−1 + 2 + 0.5, 1 + 1.25, −0.5 − 1 − 1] = [1.5, 2.25, −2.5]; decode ·0 → [0, 0]
 */
export function tinyNormRescale(over: Partial<SaeWeights> = {}): SaeWeights {
  return tiny({ normalize: "constant_norm_rescale", ...over });
}

/**
 * A skip transcoder, d_in = 2, d_sae = 3, d_out = 3, sharing W_enc and b_enc with
 * the tiny SAE; it never subtracts b_dec:
 *   W_dec = [[1, 0, 0], [0, 1, 0], [0, 0, 2]], b_dec = [0.5, 0, −1]
 *   W_skip = [[1, 0, 1], [0, 1, −1]]  ([d_in, d_out]: output += x_raw @ W_skip)
 *
 * x = [2, 0]:  h = [2, −2, 1] + b_enc = [2.5, −0.75, 0] → f = [2.5, 0, 0]
 *   y = [2.5, 0, 0] + [0.5, 0, −1] + 2·[1, 0, 1] = [5, 0, 1]
 * x = [−1, 2]: h = [−1 + 4, 1, −0.5 − 2] + b_enc = [3.5, 2.25, −3.5] → f = [3.5, 2.25, 0]
 *   y = [3.5, 2.25, 0] + [0.5, 0, −1] + (−1·[1, 0, 1] + 2·[0, 1, −1]) = [3, 4.25, −4]
 * With constant_norm_rescale, x = [2, 2] → x_n = [1, 1], h = [3.5, 0.25, −1.5],
 *   f = [3.5, 0.25, 0]; y = [4, 0.25, −1] + skip on the RAW x, 2·[1, 0, 1] + 2·[0, 1, −1]
 *   = [2, 2, 0], so y = [6, 2.25, −1] (transcoders do not undo the normalisation).
 */
export function tinyTranscoder(over: Partial<SaeWeights> = {}): SaeWeights {
  return tiny({
    kind: "transcoder",
    dOut: 3,
    applyBDecToInput: false,
    wDec: new Float32Array([1, 0, 0, 0, 1, 0, 0, 0, 2]),
    bDec: new Float32Array([0.5, 0, -1]),
    wSkip: new Float32Array([1, 0, 1, 0, 1, -1]),
    ...over,
  });
}
