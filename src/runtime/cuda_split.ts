/**
 * The host side of the CUDA encoder's `bf16x3` precision: the encoder
 * matrix split into bf16 parts for the tensor cores, its transpose for the
 * exact f32 recomputation, its column norms, and the bound that decides
 * which latents are recomputed.
 *
 * **Why it stays exact.** A value `v` splits into `hi = bf16(v)` and
 * `lo = bf16(v − hi)`, with `|v − hi − lo| ≤ 2⁻¹⁶·|v|`. One bf16 GEMM of
 * depth `3·dIn` over `[x_hi, x_hi, x_lo] · [w_hi; w_lo; w_hi]` gives
 * `h̃ = x·w` up to the dropped `x_lo·w_lo` and the rounding: with f32
 * accumulation (`γ_k = k·2⁻²⁴/(1 − k·2⁻²⁴)`), and `S = Σ|x_i||w_ij| ≤
 * ‖x‖₂‖w_j‖₂` (Cauchy–Schwarz),
 *
 * `|h̃ − x·w| ≤ (3·2⁻¹⁶ + γ_{3·dIn}) · S`, and the f32 recomputation `s`
 * has `|s − x·w| ≤ γ_dIn · S`.
 *
 * So `|h̃ − s| ≤ splitBound(dIn) · ‖x‖₂ · ‖w_j‖₂`, where
 * {@linkcode splitBound} takes that sum four times over: the tensor cores'
 * accumulation order and rounding are not documented, and a truncating
 * accumulator would double `γ`. A latent whose `h̃ + b` is more than that
 * bound below its threshold (or below 0) cannot be active in f32; every
 * other one is recomputed in f32 and tested exactly as the f32 encode tests
 * it.
 *
 * @module
 */

import { bf16ToF32, f32ToBf16 } from "../core/dtype.ts";

/** Weights split per step of {@linkcode stackedBf16}: its scratch stays small for any SAE. */
const SPLIT_CHUNK = 1 << 16;

/**
 * `W_enc` (`[dIn, dSae]`) stacked for the split GEMM: `[w_hi; w_lo; w_hi]`,
 * `[3·dIn, dSae]` bf16 bits, row-major: `hi = bf16(w)`, `lo = bf16(w − hi)`
 * (`w − hi` is exact in f32), rounded to nearest as the kernels round
 * (`f32ToBf16`).
 *
 * @example
 * ```ts
 * import { bf16ToF32 } from "../core/dtype.ts";
 * const stacked = stackedBf16(new Float32Array([1 + 2 ** -10]), 1, 1);
 * const [hi, lo] = bf16ToF32(stacked.subarray(0, 2));
 * hi + lo; // 1 + 2 ** -10
 * ```
 */
export function stackedBf16(w: Float32Array, dIn: number, dSae: number): Uint16Array {
  const n = dIn * dSae;
  const out = new Uint16Array(3 * n);
  const rest = new Float32Array(Math.min(n, SPLIT_CHUNK));
  for (let s = 0; s < n; s += SPLIT_CHUNK) {
    const e = Math.min(n, s + SPLIT_CHUNK);
    const hi = f32ToBf16(w.subarray(s, e), out.subarray(s, e));
    const r = bf16ToF32(hi, rest.subarray(0, e - s));
    for (let i = 0; i < r.length; i++) r[i] = w[s + i] - r[i];
    f32ToBf16(r, out.subarray(n + s, n + e));
  }
  out.copyWithin(2 * n, 0, n);
  return out;
}

/**
 * `‖w_j‖₂` of every column of `W_enc` (`[dIn, dSae]`), summed in f64 and
 * rounded up to f32, so the bound built on it never shrinks.
 *
 * @example
 * ```ts
 * columnNorms(new Float32Array([3, 0, 4, 1]), 2, 2); // [5, 1] (each rounded up)
 * ```
 */
export function columnNorms(w: Float32Array, dIn: number, dSae: number): Float32Array {
  const ss = new Float64Array(dSae);
  for (let i = 0; i < dIn; i++) {
    const row = i * dSae;
    for (let j = 0; j < dSae; j++) ss[j] += w[row + j] * w[row + j];
  }
  const out = new Float32Array(dSae);
  for (let j = 0; j < dSae; j++) {
    const n = Math.sqrt(ss[j]);
    out[j] = n;
    if (out[j] < n) out[j] = n * (1 + 2 ** -23); // f32 rounding went down: one ulp up
  }
  return out;
}

/**
 * The factor `c` with `|h̃ − s| ≤ c·‖x‖₂·‖w_j‖₂` (see the module's note),
 * four times the derived sum.
 *
 * @example
 * ```ts
 * splitBound(2304) < 2 ** -8; // true
 * ```
 */
export function splitBound(dIn: number): number {
  const gamma = (k: number) => (k * 2 ** -24) / (1 - k * 2 ** -24);
  return 4 * (3 * 2 ** -16 + gamma(3 * dIn + 2) + gamma(dIn + 1));
}
