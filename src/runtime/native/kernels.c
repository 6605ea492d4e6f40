/*
 * latentwatch's native CPU kernels for the candidate encoder
 * (src/runtime/native_kernels.ts compiles this file with the system's C
 * compiler on first use and loads it through Deno's FFI):
 *
 *   lw_gemm          the first pass's int8 product (AVX-512 VNNI), below
 *   lw_topk_scores   TopK: the sums scaled into scores, each token's k-th
 *   lw_select        the candidate scan (candidate_scan.ts's arithmetic)
 *   lw_dots          the second pass's exact f32 dots (AVX-512 FMA)
 *   lw_sgemm         the watched encoder's small f32 product (AVX-512 FMA)
 *
 * The int8 product:
 *
 *   acc[m, n] = sum_k (q[m, k] - 128) * w[k, n]      exactly, in int32
 *
 * q: u8 inputs quantized around 128 (row-major [M, K]); w: s8 weights
 * (row-major [K, N]), packed once at load. AVX-512 VNNI's vpdpbusd
 * multiplies unsigned bytes by signed ones, four pairs summed into each
 * int32 lane, without saturation. The signed side takes an embedded
 * broadcast, so the input is made signed (a = q - 128, the byte q ^ 0x80)
 * and the weights unsigned (w + 128): then
 *   sum a*(w + 128) - 128 * sum a = sum a*w,
 * every intermediate within int32 for K <= 65,536 (|sum| <= 128*255*K).
 *
 * Layout of the packed weights: panels of 64 columns; within a panel, for
 * each group of 4 k, the 64 columns' 4 bytes (one zmm register per 16
 * columns). K is padded to a multiple of 4 (the input's padding is 0, so
 * padded terms vanish) and N to a multiple of 64 (padded columns are
 * never stored).
 *
 * The micro-kernel keeps 6 rows x 64 columns of sums in 24 zmm registers
 * over the whole of K (the panel, K*64 bytes, stays in L1/L2 across the
 * rows). The inner loop is inline assembly: GCC 12 moves the accumulators
 * of the intrinsic form between registers every step and runs at half the
 * speed.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define NR 64
#define MR 6

/* Bytes of the packed weights of a K x N matrix. */
int64_t lw_packed_bytes(int32_t k, int32_t n) {
  return (int64_t)((n + NR - 1) / NR) * ((k + 3) / 4) * NR * 4;
}

/* Pack w (s8, row-major [K, N]) into packed (lw_packed_bytes(K, N) bytes). */
void lw_pack(const int8_t *w, int32_t k, int32_t n, uint8_t *packed) {
  const int32_t k4s = (k + 3) / 4;
  memset(packed, 128, (size_t)lw_packed_bytes(k, n));
  for (int32_t kk = 0; kk < k; kk++) {
    const int8_t *row = w + (size_t)kk * n;
    for (int32_t j = 0; j < n; j++) {
      const int32_t p = j / NR, c = j % NR;
      packed[(((size_t)p * k4s + kk / 4) * NR + c) * 4 + (kk & 3)] = (uint8_t)(row[j] + 128);
    }
  }
}

/* Bytes of the prepared input of M rows of K: the signed rows (K padded to 4), then M int32 sums. */
int64_t lw_prepared_bytes(int32_t m, int32_t k) {
  return (int64_t)m * ((k + 3) / 4) * 4 + (int64_t)m * 4;
}

/* a = q - 128 as signed bytes (padding 0) and each row's sum times 128, into prepared. */
void lw_prepare(const uint8_t *q, int32_t m, int32_t k, uint8_t *prepared) {
  const int32_t lda = (k + 3) / 4 * 4;
  int32_t *corr = (int32_t *)(prepared + (size_t)m * lda);
  for (int32_t i = 0; i < m; i++) {
    uint8_t *a = prepared + (size_t)i * lda;
    int32_t sum = 0;
    for (int32_t kk = 0; kk < k; kk++) {
      a[kk] = q[(size_t)i * k + kk] ^ 0x80;
      sum += (int32_t)q[(size_t)i * k + kk] - 128;
    }
    for (int32_t kk = k; kk < lda; kk++) a[kk] = 0;
    corr[i] = sum * 128;
  }
}

static inline void store(int32_t *c, __m512i v, int32_t corr, int32_t left) {
  v = _mm512_sub_epi32(v, _mm512_set1_epi32(corr));
  if (left >= 16) _mm512_storeu_si512(c, v);
  else if (left > 0) _mm512_mask_storeu_epi32(c, (__mmask16)((1u << left) - 1), v);
}

/* One row of the micro-kernel: 4 vpdpbusd with the row's 4 bytes broadcast. */
#define ROW(r)                                                                   \
  __asm__("vpdpbusd %[a]%{1to16%}, %[b0], %[c0]\n\t"                             \
          "vpdpbusd %[a]%{1to16%}, %[b1], %[c1]\n\t"                             \
          "vpdpbusd %[a]%{1to16%}, %[b2], %[c2]\n\t"                             \
          "vpdpbusd %[a]%{1to16%}, %[b3], %[c3]"                                 \
          : [c0] "+v"(c##r##0), [c1] "+v"(c##r##1), [c2] "+v"(c##r##2),          \
            [c3] "+v"(c##r##3)                                                   \
          : [a] "m"(*(const int32_t *)(a + (size_t)(r) * lda + 4 * k4)),        \
            [b0] "v"(b0), [b1] "v"(b1), [b2] "v"(b2), [b3] "v"(b3))

#define ZERO(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, \
                        c##r##2 = c##r##0, c##r##3 = c##r##0
#define STORE(r)                                                         \
  do {                                                                   \
    store(c + (size_t)(r) * ldc, c##r##0, corr[r], ncols);               \
    store(c + (size_t)(r) * ldc + 16, c##r##1, corr[r], ncols - 16);     \
    store(c + (size_t)(r) * ldc + 32, c##r##2, corr[r], ncols - 32);     \
    store(c + (size_t)(r) * ldc + 48, c##r##3, corr[r], ncols - 48);     \
  } while (0)

/* rows x 64 columns (rows <= 6, a compile-time constant where inlined). */
static inline __attribute__((always_inline)) void tile(
    const int32_t rows, const uint8_t *a, int32_t lda, const int32_t *corr,
    const uint8_t *panel, int32_t k4s, int32_t *c, int32_t ldc, int32_t ncols) {
  ZERO(0); ZERO(1); ZERO(2); ZERO(3); ZERO(4); ZERO(5);
  for (int32_t k4 = 0; k4 < k4s; k4++) {
    const uint8_t *b = panel + (size_t)k4 * NR * 4;
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64),
                  b2 = _mm512_loadu_si512(b + 128), b3 = _mm512_loadu_si512(b + 192);
    ROW(0);
    if (rows > 1) ROW(1);
    if (rows > 2) ROW(2);
    if (rows > 3) ROW(3);
    if (rows > 4) ROW(4);
    if (rows > 5) ROW(5);
  }
  STORE(0);
  if (rows > 1) STORE(1);
  if (rows > 2) STORE(2);
  if (rows > 3) STORE(3);
  if (rows > 4) STORE(4);
  if (rows > 5) STORE(5);
}

/*
 * acc (row-major [M, N], int32) for the panels [p0, p1) of the packed
 * weights (64 columns each), from lw_prepare's output. Two threads may run
 * disjoint panel ranges at once.
 */
void lw_gemm(const uint8_t *prepared, int32_t m, int32_t k, const uint8_t *packed, int32_t n,
             int32_t *acc, int32_t p0, int32_t p1) {
  const int32_t k4s = (k + 3) / 4, lda = k4s * 4;
  const int32_t *corr = (const int32_t *)(prepared + (size_t)m * lda);
  for (int32_t p = p0; p < p1; p++) {
    const uint8_t *panel = packed + (size_t)p * k4s * NR * 4;
    const int32_t ncols = n - p * NR < NR ? n - p * NR : NR;
    for (int32_t i = 0; i < m; i += MR) {
      const uint8_t *a = prepared + (size_t)i * lda;
      int32_t *c = acc + (size_t)i * n + (size_t)p * NR;
      switch (m - i < MR ? m - i : MR) {
        case 6: tile(6, a, lda, corr + i, panel, k4s, c, n, ncols); break;
        case 5: tile(5, a, lda, corr + i, panel, k4s, c, n, ncols); break;
        case 4: tile(4, a, lda, corr + i, panel, k4s, c, n, ncols); break;
        case 3: tile(3, a, lda, corr + i, panel, k4s, c, n, ncols); break;
        case 2: tile(2, a, lda, corr + i, panel, k4s, c, n, ncols); break;
        default: tile(1, a, lda, corr + i, panel, k4s, c, n, ncols); break;
      }
    }
  }
}

/*
 * The candidate encoder's exact second pass: for c < n, with pairs[2c] and
 * pairs[2c + 1] byte offsets from base of an input row (f32) and a weight
 * row (f32, or bf16: each value's upper 16 bits, widened exactly), each
 * `stride` values long (a multiple of 16, zero-padded),
 *   out[c] = sum_i x[i] * w[i]     in f32 (fused multiply-adds, 4 x 16 lanes).
 * The next pair's weight row is prefetched while this one is summed: each
 * pair starts a row that is mostly not in cache, and waiting for its first
 * lines was most of the time (docs/performance.md).
 */
static inline __m512 widen(const uint8_t *w, size_t i, int32_t bf16) {
  if (!bf16) return _mm512_loadu_ps(w + i * 4);
  const __m256i h = _mm256_loadu_si256((const __m256i *)(w + i * 2));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void lw_dots(const uint8_t *base, const uint32_t *pairs, int32_t n, int32_t stride,
             int32_t bf16, float *out) {
  const size_t wbytes = bf16 ? 2 : 4;
  for (int32_t c = 0; c < n; c++) {
    const float *x = (const float *)(base + pairs[2 * c]);
    const uint8_t *w = base + pairs[2 * c + 1];
    const uint8_t *next = c + 1 < n ? base + pairs[2 * c + 3] : w;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int32_t i = 0;
    for (; i + 64 <= stride; i += 64) {
      for (size_t line = (size_t)i * wbytes; line < (size_t)(i + 64) * wbytes; line += 64) {
        _mm_prefetch((const char *)(next + line), _MM_HINT_T0);
      }
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), widen(w, i, bf16), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), widen(w, i + 16, bf16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), widen(w, i + 32, bf16), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), widen(w, i + 48, bf16), a3);
    }
    for (; i < stride; i += 16) {
      _mm_prefetch((const char *)(next + (size_t)i * wbytes), _MM_HINT_T0);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), widen(w, i, bf16), a0);
    }
    out[c] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
}

/* Restore the min-heap property of heap[0..k) from slot i down. */
static void sift_down(float *heap, int32_t k, int32_t i) {
  const float v = heap[i];
  for (;;) {
    int32_t child = 2 * i + 1;
    if (child >= k) break;
    if (child + 1 < k && heap[child + 1] < heap[child]) child++;
    if (heap[child] >= v) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = v;
}

/*
 * TopK's first pass after the product, for the tokens [t0, t1): in place,
 * each token's sums become its approximate scores
 *   a[t, j] = f32(acc[t, j] * col_scale[j] * token_scale[t] + col_bias[j])
 * (the products in f64, one rounding to f32), and kth[t] is the k-th
 * largest of them (a min-heap of the k largest seen). heap: k floats of
 * scratch per call.
 */
void lw_topk_scores(int32_t *acc, int32_t t0, int32_t t1, int32_t n, const double *col_scale,
                    const float *col_bias, const float *token_scale, int32_t k, float *heap,
                    float *kth) {
  for (int32_t t = t0; t < t1; t++) {
    int32_t *row = acc + (size_t)t * n;
    float *a = (float *)row;
    const double st = token_scale[t];
    for (int32_t j = 0; j < n; j++) a[j] = (float)((double)row[j] * col_scale[j] * st + col_bias[j]);
    for (int32_t i = 0; i < k; i++) heap[i] = a[i];
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(heap, k, i);
    for (int32_t j = k; j < n; j++) {
      if (a[j] > heap[0]) {
        heap[0] = a[j];
        sift_down(heap, k, 0);
      }
    }
    kth[t] = heap[0];
  }
}

/*
 * The candidate scan (candidate_scan.ts's #scanHere and #admit, the same
 * double arithmetic in the same order, so the same candidates; built with
 * -ffp-contract=off): for the tokens [t0, t1) and each latent j,
 *   v = acc[t, j] * col_scale[j] * scale[t] + col_bias[j]   (kind 0: int32 sums)
 *   v = scores[t, j]                                          (kind 1: TopK's f32 scores)
 * a latent with v > cut (the token's uniform test) is kept when its own
 * bound passes:
 *   own = n_hat * hat[j] + n_err * err[j] + n_x * x[j]
 *   slack = 2^-20 * (|v| + |cut| + bound + 1e-30)
 *   v - cut - bound + own + slack > 0
 * with upper = f32(v + own + slack). tb: 5 floats per token (n_hat, n_err,
 * n_x, bound, cut). Token t's first cap latents go to cand/upper[(t - t0) *
 * cap..]; counts[t - t0] is how many passed (more than cap: the caller
 * decides).
 */
void lw_select(const void *values, int32_t kind, int32_t t0, int32_t t1, int32_t n,
               const double *col_scale, const float *col_bias, const float *scale,
               int32_t scale_per_token, const float *tb, const double *hat, const double *err,
               const double *xf, int32_t cap, uint32_t *cand, float *upper, int32_t *counts) {
  for (int32_t t = t0; t < t1; t++) {
    const float *b = tb + (size_t)t * 5;
    const double n_hat = b[0], n_err = b[1], n_x = b[2], bound = b[3], cut = b[4];
    const double st = scale[scale_per_token ? t : 0];
    const int32_t *acc = (const int32_t *)values + (size_t)t * n;
    const float *scores = (const float *)values + (size_t)t * n;
    uint32_t *c = cand + (size_t)(t - t0) * cap;
    float *u = upper + (size_t)(t - t0) * cap;
    const __m512d vcut = _mm512_set1_pd(cut), vst = _mm512_set1_pd(st);
    int32_t count = 0;
    for (int32_t j0 = 0; j0 < n; j0 += 8) {
      const int32_t left = n - j0;
      const __mmask8 m = left >= 8 ? 0xff : (__mmask8)((1u << left) - 1);
      __m512d v;
      if (kind == 0) {
        const __m256i a = _mm256_maskz_loadu_epi32(m, acc + j0);
        v = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(a), _mm512_maskz_loadu_pd(m, col_scale + j0)), vst);
        v = _mm512_add_pd(v, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, col_bias + j0)));
      } else {
        v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, scores + j0));
      }
      __mmask8 pass = _mm512_mask_cmp_pd_mask(m, v, vcut, _CMP_GT_OQ);
      while (pass) {
        const int32_t j = j0 + __builtin_ctz(pass);
        pass &= pass - 1;
        const double vj = kind == 0
                              ? (double)acc[j] * col_scale[j] * st + (double)col_bias[j]
                              : (double)scores[j];
        const double own = n_hat * hat[j] + n_err * err[j] + n_x * xf[j];
        const double slack = 0x1p-20 * (__builtin_fabs(vj) + __builtin_fabs(cut) + bound + 1e-30);
        if (vj - cut - bound + own + slack > 0) {
          if (count < cap) {
            c[count] = (uint32_t)j;
            u[count] = (float)(vj + own + slack);
          }
          count++;
        }
      }
    }
    counts[t - t0] = count;
  }
}

/*
 * The watched encoder's product for a few tokens and a few hundred watched
 * latents (watched_dots.ts): out[m, n] = x'[m, k] * W[k, n] in f32, each
 * output one chain of fused multiply-adds over k in order, where x' = x,
 * or x - sub (each row, f32) when sub is not null. With act 1 or 2 each
 * output then becomes the graph's last nodes, in f32 as watched_dots.ts
 * computes them: h = dot + bias[j]; act 1 (ReLU) h > 0 ? h : 0; act 2
 * (JumpReLU) h > level[j] ? h : 0 (act 0: the dot itself).
 *
 * W is packed (by the caller) into panels of pw = 16 * nq columns (nq 1 to
 * 4): panel p holds k rows of pw floats, its columns p*pw .. p*pw+pw-1, the
 * last panel zero-padded. A tile keeps MR rows x pw columns of sums in
 * registers over the whole of k; a panel (k*pw*4 bytes) stays in L2 while
 * the rows stream past it.
 */
static inline __attribute__((always_inline)) void sgemm_tile(
    const float *x, int32_t k, const float *panel, float *out, int32_t n, int32_t mr, int32_t nq,
    int32_t cols, const float *sub, const float *bias, const float *level, int32_t act) {
  const int32_t pw = 16 * nq;
  __m512 acc[MR][4];
  for (int32_t r = 0; r < mr; r++)
    for (int32_t q = 0; q < nq; q++) acc[r][q] = _mm512_setzero_ps();
  for (int32_t i = 0; i < k; i++) {
    const float *wr = panel + (size_t)i * pw;
    __m512 w[4];
    for (int32_t q = 0; q < nq; q++) w[q] = _mm512_loadu_ps(wr + 16 * q);
    for (int32_t r = 0; r < mr; r++) {
      // the graph's f32(x - b_dec), one rounding, when sub is given
      const __m512 xb = _mm512_set1_ps(sub ? x[(size_t)r * k + i] - sub[i] : x[(size_t)r * k + i]);
      for (int32_t q = 0; q < nq; q++) acc[r][q] = _mm512_fmadd_ps(xb, w[q], acc[r][q]);
    }
  }
  for (int32_t q = 0; q < nq; q++) {
    const int32_t left = cols - 16 * q;
    if (left <= 0) break;
    const __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
    __m512 b = _mm512_setzero_ps(), lv = b;
    if (act != 0) b = _mm512_maskz_loadu_ps(m, bias + 16 * q);
    if (act == 2) lv = _mm512_maskz_loadu_ps(m, level + 16 * q);
    for (int32_t r = 0; r < mr; r++) {
      __m512 v = acc[r][q];
      if (act != 0) {
        v = _mm512_add_ps(v, b);
        // ordered greater-than: NaN and -0 become +0, as `h > t ? h : 0` in JavaScript
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, lv, _CMP_GT_OQ), v);
      }
      _mm512_mask_storeu_ps(out + (size_t)r * n + 16 * q, m, v);
    }
  }
}

/* The rows of x through one panel, MR at a time, then the 1 to 5 left. */
#define SGEMM_PANEL(NQ)                                                                        \
  static void sgemm_panel_##NQ(const float *x, int32_t m, int32_t k, const float *panel,       \
                               float *o, int32_t n, int32_t cols, const float *sub,            \
                               const float *bias, const float *level, int32_t act) {           \
    int32_t t = 0;                                                                             \
    for (; t + MR <= m; t += MR)                                                               \
      sgemm_tile(x + (size_t)t * k, k, panel, o + (size_t)t * n, n, MR, NQ, cols, sub, bias,   \
                 level, act);                                                                  \
    const float *xt = x + (size_t)t * k;                                                       \
    float *ot = o + (size_t)t * n;                                                             \
    switch (m - t) {                                                                           \
      case 5: sgemm_tile(xt, k, panel, ot, n, 5, NQ, cols, sub, bias, level, act); break;     \
      case 4: sgemm_tile(xt, k, panel, ot, n, 4, NQ, cols, sub, bias, level, act); break;     \
      case 3: sgemm_tile(xt, k, panel, ot, n, 3, NQ, cols, sub, bias, level, act); break;     \
      case 2: sgemm_tile(xt, k, panel, ot, n, 2, NQ, cols, sub, bias, level, act); break;     \
      case 1: sgemm_tile(xt, k, panel, ot, n, 1, NQ, cols, sub, bias, level, act); break;     \
      default: break;                                                                          \
    }                                                                                          \
  }
SGEMM_PANEL(1)
SGEMM_PANEL(2)
SGEMM_PANEL(3)
SGEMM_PANEL(4)

void lw_sgemm(const float *x, int32_t m, int32_t k, const float *packed, int32_t n, int32_t nq,
              float *out, const float *sub, const float *bias, const float *level, int32_t act) {
  const int32_t pw = 16 * nq;
  for (int32_t p = 0; p * pw < n; p++) {
    const float *panel = packed + (size_t)p * k * pw;
    const int32_t j0 = p * pw;
    const int32_t cols = n - j0 < pw ? n - j0 : pw;
    const float *bj = bias ? bias + j0 : bias, *lj = level ? level + j0 : level;
    switch (nq) {
      case 1: sgemm_panel_1(x, m, k, panel, out + j0, n, cols, sub, bj, lj, act); break;
      case 2: sgemm_panel_2(x, m, k, panel, out + j0, n, cols, sub, bj, lj, act); break;
      case 3: sgemm_panel_3(x, m, k, panel, out + j0, n, cols, sub, bj, lj, act); break;
      default: sgemm_panel_4(x, m, k, panel, out + j0, n, cols, sub, bj, lj, act); break;
    }
  }
}
