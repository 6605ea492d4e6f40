/**
 * The GPU encoders' tests' comparison with the plain-TypeScript f64
 * reference encoder (WebGPU in `webgpu_cases.ts`, CUDA in
 * `../cuda_encoder_test.ts`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Rng } from "../../core/random.ts";
import { referenceEncode, referencePreActivations } from "../../core/reference_encoder.ts";
import type { SaeWeights, SparseLatents } from "../../core/sae.ts";
import { randomSae } from "../../formats/random_sae.ts";

/** The tolerance on a value: 1e-4 relative, 1e-4 absolute near 0. */
export const tol = (v: number) => 1e-4 * (1 + Math.abs(v));

/**
 * Compare with the f64 reference: the same active latents, except a latent
 * whose pre-activation lies within f32 rounding of its threshold (or of 0),
 * and values within `tol`.
 */
export function assertMatchesReference(
  sae: SaeWeights,
  x: Float32Array,
  tokens: number,
  got: SparseLatents[],
): number {
  const want = referenceEncode(sae, x, tokens);
  assert.deepEqual(got.length, tokens);
  let active = 0;
  for (let t = 0; t < tokens; t++) {
    const h = referencePreActivations(sae, x.subarray(t * sae.dIn, (t + 1) * sae.dIn));
    const g = new Map<number, number>();
    got[t].indices.forEach((i, n) => g.set(i, got[t].values[n]));
    for (let n = 1; n < got[t].indices.length; n++) {
      assert(got[t].indices[n] > got[t].indices[n - 1], `token ${t}: indices ascend`);
    }
    const w = new Map<number, number>();
    want[t].indices.forEach((i, n) => w.set(i, want[t].values[n]));
    active += g.size; // the encoder's own count: a silent empty result fails the callers
    for (const i of new Set([...g.keys(), ...w.keys()])) {
      const edge = Math.abs(h[i] - Math.max(sae.threshold?.[i] ?? 0, 0));
      if (g.has(i) !== w.has(i)) {
        assert(
          edge <= tol(h[i]),
          `token ${t} latent ${i}: active ${g.has(i)}, reference ${w.has(i)}, h ${h[i]}`,
        );
        continue;
      }
      const d = Math.abs(g.get(i)! - w.get(i)!);
      assert(d <= tol(w.get(i)!), `token ${t} latent ${i}: ${g.get(i)} vs reference ${w.get(i)}`);
    }
  }
  return active;
}

/** `tokens × dIn` seeded Gaussian input. */
export function gaussianInput(tokens: number, dIn: number, seed: number, scale = 1): Float32Array {
  return new Rng(seed).fillGaussian(new Float32Array(tokens * dIn), scale);
}

/** SAEs with odd widths, ReLU, both input normalisations and no `b_dec` subtraction. */
export function oddSaes(): SaeWeights[] {
  return [
    randomSae({ architecture: "standard", dIn: 37, dSae: 203, seed: 5 }),
    randomSae({ architecture: "jumprelu", dIn: 21, dSae: 130, seed: 6, normalize: "layer_norm" }),
    randomSae({
      architecture: "standard",
      dIn: 64,
      dSae: 256,
      seed: 7,
      normalize: "constant_norm_rescale",
      applyBDecToInput: false,
    }),
  ];
}
