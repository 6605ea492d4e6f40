/**
 * CUDA C++ for the CUDA encoder (`cuda_encoder.ts`), compiled at run time
 * by NVRTC (with `--fmad=false`, so no multiply and add is contracted
 * implicitly; the one fused multiply-add is the f32 dot product's explicit
 * `fmaf`, as in a GEMM). Between them runs cuBLAS's GEMM.
 *
 * - `lw_prep`: `x̃ = (x − shift)·scale − b_dec` per token, as the f32 encode
 *   does before its GEMM (into its own buffer: the input stays as sent).
 * - `lw_split` (`bf16x3` precision, `cuda_split.ts`): one warp per token
 *   writes `[x_hi, x_hi, x_lo]` as bf16 for the split GEMM and `‖x̃‖₂`
 *   (summed in f64, rounded up) for the bound.
 *
 * Then two phases, each with one warp per (token, segment of latents), so a
 * decode step of 64 tokens still fills the GPU (a row has `segs` segments of
 * `segLen` latents; `segs` is 1 for large batches):
 *
 * 1. activate, in place: `h ← h + b` where `h > θ` and `h > 0`, else 0, and
 *    the segment's count of active latents. `lw_activate` (f32 GEMM) tests
 *    the GEMM's value; `lw_exact_activate` (`bf16x3`) recomputes every
 *    latent within the bound of its threshold as an f32 dot product of `x̃`
 *    and its row of `W_encᵀ`, lets the f32 value decide, and counts those
 *    candidates too.
 * 2. `lw_gather`: each segment's place in its token's list is the sum of the
 *    counts before it; its nonzero latents are written there in ascending
 *    order (a warp ballot ranks the lanes), at most `cap` per token, and the
 *    token's full count beside them, so the host can gather again with more
 *    room when a token has more than `cap`.
 *
 * When a token is one segment (large batches), `lw_compact` and
 * `lw_exact_compact` do both phases in one pass instead: the activations are
 * never written back nor read again, and a token past `cap` is compacted
 * again from the pre-activations.
 *
 * Pure: strings only.
 *
 * @module
 */

/** Threads per block of every kernel (a multiple of 32: warps never straddle blocks). */
export const CUDA_BLOCK = 256;

/** The kernels' names, as `compile` is asked for them. */
export const CUDA_KERNELS = [
  "lw_prep",
  "lw_split",
  "lw_activate",
  "lw_exact_activate",
  "lw_gather",
  "lw_compact",
  "lw_exact_compact",
] as const;

/**
 * Segments per token for a batch of `rows` tokens: enough warps to fill a
 * large GPU (about 4096) without splitting a row below 256 latents.
 *
 * @example
 * ```ts
 * segmentsFor(64, 16384); // { segs: 64, segLen: 256 }
 * segmentsFor(8192, 16384); // { segs: 1, segLen: 16384 }
 * ```
 */
export function segmentsFor(rows: number, dSae: number): { segs: number; segLen: number } {
  const want = Math.max(1, Math.min(Math.ceil(4096 / rows), Math.floor(dSae / 256)));
  const segLen = Math.ceil(dSae / want / 32) * 32;
  return { segs: Math.ceil(dSae / segLen), segLen };
}

/**
 * The kernels' source (signatures as the encoder launches them).
 *
 * @example
 * ```ts
 * cudaKernelSource().includes("__ballot_sync"); // true
 * ```
 */
export function cudaKernelSource(): string {
  return /* cuda */ `
extern "C" __global__ void lw_prep(const float* __restrict__ x, float* __restrict__ xt,
    const float* __restrict__ bdec, const float* __restrict__ norm, unsigned long long n, int d_in,
    int has_norm) {
  unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned long long r = i / (unsigned long long)d_in;
  int k = (int)(i - r * (unsigned long long)d_in);
  float v = x[i];
  if (has_norm) v = (v - norm[2 * r]) * norm[2 * r + 1];
  xt[i] = v - bdec[k];
}

// bf16 bits nearest to v (ties to even), as core/dtype.ts's f32ToBf16.
__device__ unsigned short lw_bf16(float v) {
  unsigned u = __float_as_uint(v);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

__device__ float lw_from_bf16(unsigned short b) { return __uint_as_float(((unsigned)b) << 16); }

extern "C" __global__ void lw_split(const float* __restrict__ x, unsigned short* __restrict__ xcat,
    float* __restrict__ xnorm, int rows, int d_in) {
  int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  unsigned lane = threadIdx.x & 31u;
  if (row >= rows) return;
  const float* xr = x + (unsigned long long)row * d_in;
  unsigned short* out = xcat + (unsigned long long)row * 3 * d_in;
  double ss = 0.0;
  for (int i = (int)lane; i < d_in; i += 32) {
    float v = xr[i];
    unsigned short hi = lw_bf16(v);
    out[i] = hi;
    out[d_in + i] = hi;
    out[2 * d_in + i] = lw_bf16(v - lw_from_bf16(hi));
    ss += (double)v * (double)v;
  }
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (lane == 0) xnorm[row] = __double2float_ru(__dsqrt_ru(ss));
}

// Whether a latent whose split-GEMM value is v (h̃ + b) may be active in f32: within the bound
// of its threshold t and of 0, plus a few ulps for the roundings of this test itself, plus
// tiny: what subnormal operands and flushed products can add below any relative bound. Written
// so that a NaN anywhere (an overflowed norm times a zero column) makes a candidate, never hides one.
__device__ bool lw_candidate(float v, float t, float bound, float tiny) {
  float slack = bound + 2.4e-7f * (fabsf(v) + fabsf(t)) + tiny;
  return !(v <= t - slack) && !(v <= -slack);
}

// x·w in f32 by a whole warp: lane-strided FMAs, then a butterfly, after which every lane holds
// the same sum (so every lane takes the same branch on it).
__device__ float lw_warp_dot(const float* __restrict__ x, const float* __restrict__ w, int d_in,
    unsigned lane) {
  float s = 0.0f;
  for (int i = (int)lane; i < d_in; i += 32) s = fmaf(x[i], w[i], s);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  return s;
}

// The warp's (token, segment) and the segment's latents [j0, j1).
#define LW_SEGMENT \
  int warp = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5); \
  unsigned lane = threadIdx.x & 31u; \
  int row = warp / segs; \
  int seg = warp - row * segs; \
  if (row >= rows) return; /* the same for every lane of a warp */ \
  int j0 = seg * seg_len; \
  int j1 = min(d_sae, j0 + seg_len); \
  float* hr = h + (unsigned long long)row * d_sae;

extern "C" __global__ void lw_activate(float* __restrict__ h, const float* __restrict__ bias,
    const float* __restrict__ thr, int rows, int d_sae, int seg_len, int segs,
    int* __restrict__ seg_count) {
  LW_SEGMENT
  int total = 0;
  for (int c0 = j0; c0 < j1; c0 += 32) {
    int c = c0 + (int)lane;
    bool on = false;
    if (c < j1) {
      float v = hr[c] + bias[c];
      on = v > thr[c] && v > 0.0f;
      hr[c] = on ? v : 0.0f;
    }
    total += __popc(__ballot_sync(0xffffffffu, on));
  }
  if (lane == 0u) seg_count[warp] = total;
}

extern "C" __global__ void lw_exact_activate(float* __restrict__ h,
    const float* __restrict__ bias, const float* __restrict__ thr, const float* __restrict__ wt,
    const float* __restrict__ x, const float* __restrict__ xnorm, const float* __restrict__ wnorm,
    float bound, int rows, int d_sae, int d_in, int seg_len, int segs,
    int* __restrict__ seg_count, int* __restrict__ seg_cands) {
  LW_SEGMENT
  const float* xr = x + (unsigned long long)row * d_in;
  float bt = bound * xnorm[row];
  // 3·dIn products, each off by under 2^-126 when flushed to zero, with room to spare
  float tiny = 1.5e-37f * (float)d_in;
  int total = 0;
  int candidates = 0;
  for (int c0 = j0; c0 < j1; c0 += 32) {
    int c = c0 + (int)lane;
    bool cand = false;
    if (c < j1) {
      cand = lw_candidate(hr[c] + bias[c], thr[c], bt * wnorm[c], tiny);
      if (!cand) hr[c] = 0.0f;
    }
    unsigned mask = __ballot_sync(0xffffffffu, cand);
    candidates += __popc(mask);
    while (mask != 0u) {
      int j = c0 + __ffs(mask) - 1;
      mask &= mask - 1u;
      float v = lw_warp_dot(xr, wt + (unsigned long long)j * d_in, d_in, lane) + bias[j];
      bool on = v > thr[j] && v > 0.0f;
      if (lane == 0u) hr[j] = on ? v : 0.0f;
      total += on ? 1 : 0;
    }
  }
  if (lane == 0u) {
    seg_count[warp] = total;
    seg_cands[warp] = candidates;
  }
}

extern "C" __global__ void lw_gather(float* __restrict__ h, int rows, int d_sae, int seg_len,
    int segs, const int* __restrict__ seg_count, int cap, int* __restrict__ count,
    int* __restrict__ idx, float* __restrict__ val) {
  LW_SEGMENT
  const int* counts = seg_count + (unsigned long long)row * segs;
  int slot0 = 0;
  for (int s = 0; s < seg; s++) slot0 += counts[s];
  if (slot0 >= cap) return; // nothing of this segment fits; the full count still tells the host
  if (seg == 0 && lane == 0u) {
    int total = 0;
    for (int s = 0; s < segs; s++) total += counts[s];
    count[row] = total;
  }
  unsigned long long out = (unsigned long long)row * cap;
  for (int c0 = j0; c0 < j1; c0 += 32) {
    int c = c0 + (int)lane;
    float v = c < j1 ? hr[c] : 0.0f;
    bool on = v != 0.0f;
    unsigned mask = __ballot_sync(0xffffffffu, on);
    int slot = slot0 + __popc(mask & ((1u << lane) - 1u));
    if (on && slot < cap) {
      idx[out + slot] = c;
      val[out + slot] = v;
    }
    slot0 += __popc(mask);
  }
}

// segs == 1 (large batches): one pass per token, activating and gathering at once (no
// write-back of the activations, no second read).
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
  if (lane == 0u) count[row] = total;
}

extern "C" __global__ void lw_exact_compact(const float* __restrict__ h,
    const float* __restrict__ bias, const float* __restrict__ thr, const float* __restrict__ wt,
    const float* __restrict__ x, const float* __restrict__ xnorm, const float* __restrict__ wnorm,
    float bound, int rows, int d_sae, int d_in, int cap, int* __restrict__ count,
    int* __restrict__ idx, float* __restrict__ val, int* __restrict__ cands) {
  int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  unsigned lane = threadIdx.x & 31u;
  if (row >= rows) return; // the same for every lane of a warp
  const float* hr = h + (unsigned long long)row * d_sae;
  const float* xr = x + (unsigned long long)row * d_in;
  unsigned long long out = (unsigned long long)row * cap;
  float bt = bound * xnorm[row];
  // 3·dIn products, each off by under 2^-126 when flushed to zero, with room to spare
  float tiny = 1.5e-37f * (float)d_in;
  int total = 0;
  int candidates = 0;
  for (int c0 = 0; c0 < d_sae; c0 += 32) {
    int c = c0 + (int)lane;
    bool cand = false;
    if (c < d_sae) {
      cand = lw_candidate(hr[c] + bias[c], thr[c], bt * wnorm[c], tiny);
    }
    unsigned mask = __ballot_sync(0xffffffffu, cand);
    candidates += __popc(mask);
    while (mask != 0u) {
      int j = c0 + __ffs(mask) - 1;
      mask &= mask - 1u;
      float v = lw_warp_dot(xr, wt + (unsigned long long)j * d_in, d_in, lane) + bias[j];
      if (v > thr[j] && v > 0.0f) {
        if (lane == 0u && total < cap) {
          idx[out + total] = j;
          val[out + total] = v;
        }
        total++;
      }
    }
  }
  if (lane == 0u) {
    count[row] = total;
    cands[row] = candidates;
  }
}
`;
}
