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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The bf16 bits nearest to `v` (round to nearest, ties to even), as the
 * kernels round.
 *
 * @example
 * ```ts
 * bf16Bits(1); // 0x3f80
 * ```
 */
export function bf16Bits(v: number): number {
  f32[0] = v;
  const u = u32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The f32 value of bf16 bits. */
export function fromBf16(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

/**
 * `W_enc` (`[dIn, dSae]`) stacked for the split GEMM: `[w_hi; w_lo; w_hi]`,
 * `[3·dIn, dSae]` bf16 bits, row-major.
 *
 * @example
 * ```ts
 * const stacked = stackedBf16(new Float32Array([1 + 2 ** -10]), 1, 1);
 * fromBf16(stacked[0]) + fromBf16(stacked[1]); // 1 + 2 ** -10
 * ```
 */
export function stackedBf16(w: Float32Array, dIn: number, dSae: number): Uint16Array {
  const n = dIn * dSae;
  const out = new Uint16Array(3 * n);
  for (let i = 0; i < n; i++) {
    const hi = bf16Bits(w[i]);
    out[i] = hi;
    out[2 * n + i] = hi;
    out[n + i] = bf16Bits(w[i] - fromBf16(hi));
  }
  return out;
}

/**
 * `[rows, cols]` row-major to `[cols, rows]` row-major, in blocks so both
 * sides stay in cache.
 *
 * @example
 * ```ts
 * transpose(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c];
      }
    }
  }
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
