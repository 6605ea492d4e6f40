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
