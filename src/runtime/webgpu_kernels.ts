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

/** WGSL swizzle of vector component `c` (0‥3): a constant, never `v[c]`. */
const XYZW = ["x", "y", "z", "w"] as const;

/** `f(0) … f(n − 1)`. */
function each<T>(n: number, f: (i: number) => T): T[] {
  return Array.from({ length: n }, (_, i) => f(i));
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
 * Thread `(tx, ty)` owns the tile's rows `(i4·WY + ty)·4 + c` (`i4 < tm/4`,
 * `c < 4`) and columns `(j·WX + tx)·4 …+3` (`j < tn/4`).
 *
 * The shader is straight-line code generated here: every per-thread value is
 * its own WGSL variable (`acc_r_j`, `pa_l`, `pb_l`, `a_r`, `b_j`) and every
 * loop over the register tile, the stage depth and the per-thread loads is
 * unrolled in TypeScript, with vector components as swizzles. A private array
 * indexed by a loop variable becomes a Function-storage array with dynamic
 * access chains in SPIR-V, which a driver may leave in local memory (spilled)
 * instead of registers; here only storage and workgroup arrays are indexed.
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
  const aLoads = aVec4s / threads;
  const bLoads = bVec4s / threads;
  const bk4 = t.bk / 4;
  const tn4 = t.tn / 4;
  // A thread's row r (0‥tm−1) is the tile's row 4·ty + rowOff(r).
  const rowOff = (r: number) => Math.floor(r / 4) * wy * 4 + (r % 4);
  // Load slot l of a thread is vec4 `tid + l·THREADS` of the stage's A tile and of its B tile.
  const slot = (l: number) => (l === 0 ? "tid" : `tid + ${l * threads}u`);
  const slotP = (l: number) => (l === 0 ? "tid" : `(${slot(l)})`);
  const accs = each(t.tm, (r) => each(tn4, (j) => `acc_${r}_${j}`));

  // This thread's loads: A vec4 i is (row i / (BK/4), depths 4·(i % (BK/4))…),
  // B vec4 i is (depth i / (BN/4), columns 4·(i % (BN/4))…); the addresses of stage 0.
  const setup = [
    ...each(aLoads, (l) => `let am_${l} = ${slotP(l)} / (BK / 4u);`),
    ...each(aLoads, (l) => `let ak4_${l} = ${slotP(l)} % (BK / 4u);`),
    ...each(aLoads, (l) => `let xa_${l} = (row0 + am_${l}) * din4 + ak4_${l};`),
    ...each(aLoads, (l) => `let nrm_${l} = norm[row0 + am_${l}];`),
    ...each(
      bLoads,
      (l) =>
        `let wb_${l} = (${slotP(l)} / (BN / 4u)) * dsae4 + col0 / 4u + ${slotP(l)} % (BN / 4u);`,
    ),
  ];
  const prefetch = [...each(aLoads, (l) => `pa_${l}`), ...each(bLoads, (l) => `pb_${l}`)];
  // Into shared memory, whole vec4s: the same slot l of As / Bs as of the loads.
  const store = [
    ...each(aLoads, (l) => `As[${slot(l)}] = pa_${l};`),
    ...each(bLoads, (l) => `Bs[${slot(l)}] = pb_${l};`),
  ];
  // One stage's global loads into the prefetch registers: x̃ (normalised, b_dec
  // subtracted) and W_enc; `k0` undefined for stage 0.
  const loadStage = (k0?: string) => [
    ...each(
      aLoads,
      (l) =>
        `pa_${l} = (x[xa_${l}${k0 ? ` + ${k0} / 4u` : ""}] - vec4<f32>(nrm_${l}.x)) * nrm_${l}.y` +
        ` - bdec[${k0 ? `${k0} / 4u + ` : ""}ak4_${l}];`,
    ),
    ...each(bLoads, (l) => `pb_${l} = w[wb_${l}${k0 ? ` + ${k0} * dsae4` : ""}];`),
  ];

  // One stage's arithmetic, k ascending: per 4-deep slice the thread's tm rows
  // of A (As[m][k4] holds 4 depths), then per depth its tn/4 vec4s of B and
  // tm · tn/4 vec4 fmas.
  const stage: string[] = [];
  for (let k4 = 0; k4 < bk4; k4++) {
    stage.push("{", ...each(t.tm, (r) => `  let a_${r} = As[ay + ${rowOff(r) * bk4 + k4}u];`));
    for (let c = 0; c < 4; c++) {
      const k = k4 * 4 + c;
      stage.push(
        "  {",
        ...each(tn4, (j) => `    let b_${j} = Bs[tx + ${(k * t.bn) / 4 + j * wx}u];`),
      );
      for (let r = 0; r < t.tm; r++) {
        for (let j = 0; j < tn4; j++) {
          stage.push(
            `    ${accs[r][j]} = fma(vec4<f32>(a_${r}.${XYZW[c]}), b_${j}, ${accs[r][j]});`,
          );
        }
      }
      stage.push("  }");
    }
    stage.push("}");
  }

  // Bias and activation: h = acc + bias; f = h when h > thr and h > 0.
  const cols = (v: string, j: number) =>
    `vec4<f32>(${each(4, (c) => `${v}[cx + ${j * wx * 4 + c}u]`).join(", ")})`;
  const epilogue = [
    ...each(tn4, (j) => `let bias_${j} = ${cols("bias", j)};`),
    ...each(tn4, (j) => `let thr_${j} = ${cols("thr", j)};`),
    ...each(
      t.tm,
      (r) =>
        each(tn4, (j) =>
          `dense[(ry + ${rowOff(r)}u) * dsae4 + cx / 4u + ${j * wx}u]` +
          ` = activate(${accs[r][j]}, bias_${j}, thr_${j});`),
    ).flat(),
  ];

  const indent = (pad: string, ls: string[]) => ls.map((l) => pad + l).join("\n");
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

// As[m][k] and Bs[k][n], as vec4 along k / n: a thread stores its prefetched vec4s whole.
var<workgroup> As: array<vec4<f32>, ${aVec4s}>;
var<workgroup> Bs: array<vec4<f32>, ${bVec4s}>;

fn activate(acc: vec4<f32>, b: vec4<f32>, t: vec4<f32>) -> vec4<f32> {
  let h = acc + b;
  return select(vec4<f32>(0.0), h, (h > t) & (h > vec4<f32>(0.0)));
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
  let ay = ty * BK; // the vec4 in As of row 4·ty, depth 0
${indent("  ", accs.map((row) => row.map((a) => `var ${a} = vec4<f32>(0.0);`).join(" ")))}

${indent("  ", setup)}

  // Stage k0 + BK's global loads are issued before stage k0's arithmetic, so their latency hides behind it.
${indent("  ", [...prefetch.map((p) => `var ${p}: vec4<f32>;`), ...loadStage()])}
  for (var k0 = 0u; k0 < dims.d_in; k0 += BK) {
    workgroupBarrier();
${indent("    ", store)}
    if (k0 + BK < dims.d_in) {
      let k1 = k0 + BK;
${indent("      ", loadStage("k1"))}
    }
    workgroupBarrier();
${indent("    ", stage)}
  }

  let ry = row0 + ty * 4u;
  let cx = col0 + tx * 4u;
${indent("  ", epilogue)}
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
