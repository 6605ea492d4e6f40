/**
 * CUDA C++ for the CUDA encoder (`cuda_encoder.ts`), compiled at run time
 * by NVRTC (with `--fmad=false`, so no multiply and add is fused behind the
 * f32 reference's back). The GEMM between the two kernels is cuBLAS's
 * exact f32 SGEMM.
 *
 * - `lw_prep`: the input in place, `x̃ = (x − shift)·scale − b_dec` per token,
 *   as the f32 encode does before its GEMM.
 * - `lw_compact`: one warp per token reads its pre-activations in index
 *   order, adds the bias, keeps the latents with `h > θ` and `h > 0`, and
 *   writes them ascending into `cap` slots (a warp ballot ranks the lanes);
 *   the token's full count is written too, so the host can compact again
 *   when a token has more than `cap`.
 *
 * Pure: strings only.
 *
 * @module
 */

/** Threads per block of both kernels. */
export const CUDA_BLOCK = 256;

/** Tokens one `lw_compact` block handles (one warp each). */
export const COMPACT_ROWS_PER_BLOCK = CUDA_BLOCK / 32;

/** The kernels' names, as `compile` is asked for them. */
export const CUDA_KERNELS = ["lw_prep", "lw_compact"] as const;

/**
 * The kernels' source.
 *
 * `lw_prep(float* x, const float* bdec, const float* norm, u64 n, int dIn, int hasNorm)`;
 * `lw_compact(const float* h, const float* bias, const float* thr, int rows,
 * int dSae, int cap, int* count, int* idx, float* val)`.
 *
 * @example
 * ```ts
 * cudaKernelSource().includes("__ballot_sync"); // true
 * ```
 */
export function cudaKernelSource(): string {
  return /* cuda */ `
extern "C" __global__ void lw_prep(float* __restrict__ x, const float* __restrict__ bdec,
    const float* __restrict__ norm, unsigned long long n, int d_in, int has_norm) {
  unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long r = i / (unsigned long long)d_in;
  int k = (int)(i - r * (unsigned long long)d_in);
  float v = x[i];
  if (has_norm) v = (v - norm[2 * r]) * norm[2 * r + 1];
  x[i] = v - bdec[k];
}

extern "C" __global__ void lw_compact(const float* __restrict__ h, const float* __restrict__ bias,
    const float* __restrict__ thr, int rows, int d_sae, int cap, int* __restrict__ count,
    int* __restrict__ idx, float* __restrict__ val) {
  int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  unsigned lane = threadIdx.x & 31u;
  if (row >= rows) return; // the same for every lane of a warp
  const float* hr = h + (unsigned long long)row * d_sae;
  unsigned long long out = (unsigned long long)row * cap;
  int total = 0;
  for (int c0 = 0; c0 < d_sae; c0 += 32) {
    int c = c0 + (int)lane;
    float v = 0.0f;
    bool on = false;
    if (c < d_sae) {
      v = hr[c] + bias[c];
      on = v > thr[c] && v > 0.0f;
    }
    unsigned mask = __ballot_sync(0xffffffffu, on);
    if (on) {
      int slot = total + __popc(mask & ((1u << lane) - 1u));
      if (slot < cap) {
        idx[out + slot] = c;
        val[out + slot] = v;
      }
    }
    total += __popc(mask);
  }
  if (lane == 0) count[row] = total;
}
`;
}
