/**
 * The bench's SAE shapes and their seeded weights, shared by the CPU bench
 * (`run.ts`) and the GPU bench (`gpu.ts`) so both encode the same SAEs.
 *
 * @module
 */

import type { SaeArchitecture, SaeWeights } from "../src/core/sae.ts";
import { Rng } from "../src/core/random.ts";

/** One bench SAE: architecture, widths, TopK's k, a label and the weights' seed. */
export interface Shape {
  arch: SaeArchitecture;
  dIn: number;
  dSae: number;
  k?: number;
  label: string;
  seed: number;
}

export const SHAPES: Shape[] = [
  { arch: "topk", dIn: 768, dSae: 24576, k: 32, label: "topk-768x24576-k32", seed: 1 },
  { arch: "jumprelu", dIn: 768, dSae: 24576, label: "jumprelu-768x24576", seed: 2 },
  { arch: "jumprelu", dIn: 2304, dSae: 16384, label: "jumprelu-2304x16384", seed: 3 },
  { arch: "topk", dIn: 4096, dSae: 65536, k: 64, label: "topk-4096x65536-k64", seed: 4 },
];

/** Approximately N(0, std²) (Irwin–Hall of 4 xorshift32 uniforms): 1.7 s for 2^28 values. */
export function fillApproxGaussian(a: Float32Array, seed: number, std: number): Float32Array {
  let s = (seed * 0x9e3779b9) | 0 || 1;
  const scale = std * Math.sqrt(3) / 65536;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const u = (s & 0xffff) + (s >>> 16);
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    a[i] = (u + (s & 0xffff) + (s >>> 16) - 131070) * scale;
  }
  return a;
}

/**
 * A seeded SAE of `shape` with trained-like sparsity: `W_enc` columns of
 * norm ≈ 1, so `h` is about N(−0.1, 1) on Gaussian input; JumpReLU thresholds
 * in [2.6, 3.0] keep ~0.2% of latents (L0 ≈ 30–50), as trained SAEs do. The
 * decoder is left zero (never touched, so never resident): encoding does not
 * read it.
 */
export function benchSae(shape: Shape): SaeWeights {
  const { dIn, dSae } = shape;
  const rng = new Rng(shape.seed);
  const bEnc = new Float32Array(dSae);
  for (let i = 0; i < dSae; i++) bEnc[i] = -0.1 + 0.05 * rng.gaussian();
  const sae: SaeWeights = {
    format: "bench",
    architecture: shape.arch,
    dIn,
    dSae,
    hookName: null,
    modelName: null,
    dtype: "float32",
    applyBDecToInput: true,
    wEnc: fillApproxGaussian(new Float32Array(dIn * dSae), shape.seed, 1 / Math.sqrt(dIn)),
    bEnc,
    wDec: new Float32Array(dSae * dIn),
    bDec: rng.fillGaussian(new Float32Array(dIn), 0.1),
    source: `bench:${shape.label}:seed=${shape.seed}`,
  };
  if (shape.arch === "topk") {
    sae.k = shape.k;
    sae.rescaleActsByDecoderNorm = false;
  }
  if (shape.arch === "jumprelu") {
    sae.threshold = new Float32Array(dSae);
    for (let i = 0; i < dSae; i++) sae.threshold[i] = 2.6 + 0.4 * rng.uniform();
  }
  return sae;
}
