/**
 * WGSL for the WebGPU full encode (`webgpu_encoder.ts`): a tiled f32 GEMM
 * whose last pass applies the bias and the (JumpReLU or ReLU) activation and
 * writes the activated latents densely on the device, then a compaction pass
 * that writes each token's nonzero latents in ascending index order, so only
 * `tokens × cap` (index, value) pairs ever travel back to the host.
 *
 * Pure: strings only, no WebGPU calls, so the shapes can be checked anywhere.
 *
 * @module
 */

/** One GEMM tiling: a workgroup computes `bm × bn` outputs, a thread `tm × tn`. */
export interface GemmTile {
  /** Rows (tokens) per workgroup. */
  readonly bm: number;
  /** Columns (latents) per workgroup. */
  readonly bn: number;
  /** Depth of one shared-memory stage. */
  readonly bk: number;
  /** Rows per thread (a multiple of 4). */
  readonly tm: number;
  /** Columns per thread (a multiple of 4). */
  readonly tn: number;
}

/** The tilings the encoder chooses between (by batch size) and the GPU bench sweeps. */
export const GEMM_TILES = {
  /** Decode-sized batches: many workgroups even for 64 tokens. */
  small: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
  /** Mid-sized batches. */
  medium: { bm: 64, bn: 128, bk: 16, tm: 4, tn: 8 },
  /** Large batches: the most arithmetic per byte of shared memory. */
  large: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
  /** As `large`, twice the depth per stage (half the barriers, 32 KiB of shared memory). */
  deep: { bm: 128, bn: 128, bk: 32, tm: 8, tn: 8 },
  /** 64 tokens × 256 latents: `large`'s arithmetic per thread for decode-sized batches. */
  wide: { bm: 64, bn: 256, bk: 16, tm: 4, tn: 16 },
} as const satisfies Record<string, GemmTile>;

/** Name of one of {@linkcode GEMM_TILES}. */
export type GemmTileName = keyof typeof GEMM_TILES;

/** Threads per workgroup of a tiling: `(bn / tn) × (bm / tm)`. */
export function tileThreads(t: GemmTile): { x: number; y: number } {
  return { x: t.bn / t.tn, y: t.bm / t.tm };
}

/** Every row and column count the kernels see is padded to a multiple of this. */
export const PAD_ROWS = 128;
/** Latent columns are padded to a multiple of this (the widest `bn`). */
export const PAD_COLS = 256;
/** `dIn` is padded to a multiple of this (every `bk`). */
export const PAD_DEPTH = 32;

/** Bytes of workgroup (shared) memory a tiling's GEMM uses: one stage of each operand. */
export function tileSharedBytes(t: GemmTile): number {
  return (t.bm * t.bk + t.bk * t.bn) * 4;
}

/** The device limits {@linkcode fitRows} reads. */
export interface RowLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

/**
 * The most rows (a multiple of {@linkcode PAD_ROWS}, at most `requested`
 * rounded up) one batch may have so that every per-batch buffer fits the
 * device: the dense activations `rows × dSaePad`, the input `rows × dInPad`,
 * the readback `rows × (1 + 2·cap)` words, and one compaction workgroup per
 * row. 0 when not even {@linkcode PAD_ROWS} rows fit.
 *
 * @example
 * ```ts
 * const limits = { maxStorageBufferBindingSize: 2 ** 27, maxBufferSize: 2 ** 28, maxComputeWorkgroupsPerDimension: 65535 };
 * fitRows(8192, { dInPad: 2304, dSaePad: 16384, cap: 128 }, limits); // 2048: 2048 × 16384 × 4 B = 128 MiB
 * ```
 */
export function fitRows(
  requested: number,
  widths: { dInPad: number; dSaePad: number; cap: number },
  limits: RowLimits,
): number {
  const binding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const perRow = Math.max(widths.dSaePad, widths.dInPad, 1 + 2 * widths.cap) * 4;
  const byBytes = Math.floor(binding / perRow);
  const rows = Math.min(
    roundUp(requested, PAD_ROWS),
    byBytes,
    limits.maxComputeWorkgroupsPerDimension,
  );
  return Math.floor(rows / PAD_ROWS) * PAD_ROWS;
}

/** Round `n` up to a multiple of `m`. */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * The GEMM + activation kernel for tiling `t`.
 *
 * Bindings (group 0): 0 `x` `[rowsPad, dInPad]` f32 as vec4; 1 `w`
 * `[dInPad, dSaePad]` f32 as vec4; 2 `bias` `[dSaePad]`; 3 `thr` `[dSaePad]`
 * (a latent is active when `h > thr` and `h > 0`); 4 `bdec` `[dInPad]`,
 * subtracted from every input value; 5 `norm` `[rowsPad]` vec2 (shift, scale):
 * `x̃ = (x − shift)·scale − bdec`; 6 `dense` `[rowsPad, dSaePad]`, written
 * with the activated value or 0; 7 the dims uniform.
 *
 * @example
 * ```ts
 * const wgsl = gemmActivateWgsl(GEMM_TILES.small);
 * wgsl.includes("@compute"); // true
 * ```
 */
export function gemmActivateWgsl(t: GemmTile): string {
  const { x: wx, y: wy } = tileThreads(t);
  const threads = wx * wy;
  const aVec4s = (t.bm * t.bk) / 4;
  const bVec4s = (t.bk * t.bn) / 4;
  if (aVec4s % threads !== 0 || bVec4s % threads !== 0) {
    throw new RangeError(`tile ${JSON.stringify(t)}: shared-memory loads do not divide evenly`);
  }
  const tm4 = t.tm / 4;
  const tn4 = t.tn / 4;
  return /* wgsl */ `
struct Dims { rows: u32, d_in: u32, d_sae: u32, cap: u32 }
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> thr: array<f32>;
@group(0) @binding(4) var<storage, read> bdec: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> norm: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> dense: array<vec4<f32>>;
@group(0) @binding(7) var<uniform> dims: Dims;

const BM: u32 = ${t.bm}u;
const BN: u32 = ${t.bn}u;
const BK: u32 = ${t.bk}u;
const WX: u32 = ${wx}u;
const WY: u32 = ${wy}u;
const THREADS: u32 = ${threads}u;
const TM4: u32 = ${tm4}u;
const TN4: u32 = ${tn4}u;

// As[k][m] and Bs[k][n], both as vec4 along m / n.
var<workgroup> As: array<vec4<f32>, ${aVec4s}>;
var<workgroup> Bs: array<vec4<f32>, ${bVec4s}>;

// One stage's global loads: BM×BK of x̃ (normalised, b_dec subtracted) and BK×BN of W_enc.
fn load_stage(
  pa: ptr<function, array<vec4<f32>, ${aVec4s / threads}>>,
  pb: ptr<function, array<vec4<f32>, ${bVec4s / threads}>>,
  k0: u32, tid: u32, row0: u32, col0: u32, din4: u32, dsae4: u32,
) {
  for (var l = 0u; l < ${aVec4s / threads}u; l++) {
    let idx = tid + l * THREADS;
    let m = idx / (BK / 4u);
    let k4 = idx % (BK / 4u);
    let nrm = norm[row0 + m];
    (*pa)[l] = (x[(row0 + m) * din4 + k0 / 4u + k4] - vec4<f32>(nrm.x)) * nrm.y - bdec[k0 / 4u + k4];
  }
  for (var l = 0u; l < ${bVec4s / threads}u; l++) {
    let idx = tid + l * THREADS;
    let k = idx / (BN / 4u);
    let n4 = idx % (BN / 4u);
    (*pb)[l] = w[(k0 + k) * dsae4 + col0 / 4u + n4];
  }
}

@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let tid = ty * WX + tx;
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  let din4 = dims.d_in / 4u;
  let dsae4 = dims.d_sae / 4u;
  var acc: array<vec4<f32>, ${t.tm * tn4}>;
  for (var i = 0u; i < ${t.tm * tn4}u; i++) { acc[i] = vec4<f32>(0.0); }

  // Global loads for stage k0 + BK are issued before stage k0's arithmetic, so their latency hides behind it.
  var pa: array<vec4<f32>, ${aVec4s / threads}>;
  var pb: array<vec4<f32>, ${bVec4s / threads}>;
  load_stage(&pa, &pb, 0u, tid, row0, col0, din4, dsae4);
  for (var k0 = 0u; k0 < dims.d_in; k0 += BK) {
    workgroupBarrier();
    // A tile: BM rows × BK depth, stored transposed so a thread reads 4 rows at once.
    for (var l = 0u; l < ${aVec4s / threads}u; l++) {
      let idx = tid + l * THREADS;
      let m = idx / (BK / 4u);
      let kk = (idx % (BK / 4u)) * 4u;
      let v = pa[l];
      As[(kk + 0u) * (BM / 4u) + m / 4u][m % 4u] = v.x;
      As[(kk + 1u) * (BM / 4u) + m / 4u][m % 4u] = v.y;
      As[(kk + 2u) * (BM / 4u) + m / 4u][m % 4u] = v.z;
      As[(kk + 3u) * (BM / 4u) + m / 4u][m % 4u] = v.w;
    }
    for (var l = 0u; l < ${bVec4s / threads}u; l++) { Bs[tid + l * THREADS] = pb[l]; }
    if (k0 + BK < dims.d_in) { load_stage(&pa, &pb, k0 + BK, tid, row0, col0, din4, dsae4); }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var b: array<vec4<f32>, ${tn4}>;
      for (var j = 0u; j < TN4; j++) { b[j] = Bs[k * (BN / 4u) + j * WX + tx]; }
      for (var i4 = 0u; i4 < TM4; i4++) {
        let a = As[k * (BM / 4u) + i4 * WY + ty];
        for (var c = 0u; c < 4u; c++) {
          for (var j = 0u; j < TN4; j++) {
            let o = (i4 * 4u + c) * TN4 + j;
            acc[o] = fma(vec4<f32>(a[c]), b[j], acc[o]);
          }
        }
      }
    }
  }

  // Bias and activation in the GEMM's last pass: h = acc + bias; f = h when h > thr and h > 0.
  for (var i4 = 0u; i4 < TM4; i4++) {
    for (var c = 0u; c < 4u; c++) {
      let row = row0 + (i4 * WY + ty) * 4u + c;
      for (var j = 0u; j < TN4; j++) {
        let col = col0 + (j * WX + tx) * 4u;
        let h = acc[(i4 * 4u + c) * TN4 + j] + vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]);
        let t = vec4<f32>(thr[col], thr[col + 1u], thr[col + 2u], thr[col + 3u]);
        let on = (h > t) & (h > vec4<f32>(0.0));
        let f = select(vec4<f32>(0.0), h, on);
        dense[(row * dims.d_sae + col) / 4u] = f;
      }
    }
  }
}
`;
}

/** Threads of the compaction workgroup (one workgroup per token). */
export const COMPACT_THREADS = 256;

/**
 * The compaction kernel: workgroup `r` scans row `r` of `dense` in order
 * (4 values per thread per step, an exclusive scan across the workgroup) and
 * writes the nonzero latents' indices and values, ascending, into
 * `idx[r·cap …]` / `val[r·cap …]`; `count[r]` is the row's full count, which
 * may exceed `cap` (the host then compacts again with a larger cap).
 *
 * Bindings (group 0): 0 `dense`; 1 `idx` u32; 2 `val` f32; 3 `count` u32;
 * 4 the dims uniform (`rows`, `d_in` unused, `d_sae` padded, `cap`).
 *
 * @example
 * ```ts
 * compactWgsl().includes("workgroupBarrier"); // true
 * ```
 */
export function compactWgsl(): string {
  return /* wgsl */ `
struct Dims { rows: u32, d_in: u32, d_sae: u32, cap: u32 }
@group(0) @binding(0) var<storage, read> dense: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> val: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<u32>;
@group(0) @binding(4) var<uniform> dims: Dims;

const T: u32 = ${COMPACT_THREADS}u;
var<workgroup> scan: array<u32, ${COMPACT_THREADS}>;

@compute @workgroup_size(${COMPACT_THREADS}, 1, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let r = wid.x;
  let t = lid.x;
  let row4 = r * (dims.d_sae / 4u);
  let out0 = r * dims.cap;
  var total = 0u;
  for (var c0 = 0u; c0 < dims.d_sae / 4u; c0 += T) {
    var v = vec4<f32>(0.0);
    if (c0 + t < dims.d_sae / 4u) { v = dense[row4 + c0 + t]; }
    let on = vec4<u32>(v != vec4<f32>(0.0));
    let mine = on.x + on.y + on.z + on.w;
    scan[t] = mine;
    workgroupBarrier();
    // Hillis-Steele inclusive scan over the workgroup.
    for (var s = 1u; s < T; s <<= 1u) {
      var add = 0u;
      if (t >= s) { add = scan[t - s]; }
      workgroupBarrier();
      scan[t] += add;
      workgroupBarrier();
    }
    var slot = total + scan[t] - mine;
    let col = (c0 + t) * 4u;
    for (var c = 0u; c < 4u; c++) {
      if (v[c] != 0.0) {
        if (slot < dims.cap) {
          idx[out0 + slot] = col + c;
          val[out0 + slot] = v[c];
        }
        slot++;
      }
    }
    total += scan[T - 1u];
    workgroupBarrier();
  }
  if (t == 0u) { count[r] = total; }
}
`;
}
