/**
 * The candidate encoder's uniform test in WebAssembly SIMD: for one token's
 * int32 accumulations `acc` (the int8 pass's output), the columns where
 * `acc_j·cs_j + cb_j > cut` in f32, four columns per step. A prefilter: its
 * `cut` is lowered by a slack that covers f32 rounding (`scanSlack`), and
 * the caller re-tests every column it returns exactly, so the result is the
 * same set the plain f64 test finds.
 *
 * The memory is not shared, so onnxruntime can write the int8 pass's output
 * straight into it (a pre-allocated output tensor; onnxruntime-node refuses
 * views of shared memory). Layout: `cs` and `cb` (`f32 [dSae]` each), the
 * output indices (`u32 [dSae]`), then regions of accumulations.
 *
 * @module
 */
import {
  BLOCK,
  BR,
  BR_IF,
  END,
  F32,
  F32X4_ADD,
  F32X4_CONVERT_I32X4_S,
  F32X4_GT,
  F32X4_MUL,
  F32X4_SPLAT,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_CONST,
  I32_GE_U,
  I32_SHL,
  I32_SHR_U,
  I32_STORE,
  I32X4_BITMASK,
  IF,
  LOOP,
  MODULE_HEADER,
  name,
  section,
  set,
  uleb,
  V128,
  V128_LOAD,
  vec,
  VOID,
} from "./wasm_asm.ts";

const PAGE = 65536;

/**
 * `scan(acc, cs, cb, n, cut, rowScale, out) → count`: byte addresses `acc`
 * (i32), `cs`, `cb` (f32), `out` (u32); `n` a multiple of 4. Writes the
 * `j < n` with `f32(acc[j])·cs[j]·rowScale + cb[j] > cut`, ascending, to `out`.
 */
function scanModule(): Uint8Array {
  // params 0..6: acc, cs, cb, n, cut, rowScale, out; locals: 7 j (bytes), 8 count, 9 mask,
  // 10 cutv, 11 scalev (v128)
  const [ACC, CS, CB, N, CUT, ROW_SCALE, OUT, J, COUNT, MASK, CUTV, SCALEV] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
  ];
  const load = (base: number) => [...get(base), ...get(J), I32_ADD, ...V128_LOAD, 2, 0];
  // lane L passed: out[count++] = j/4 + L
  const emit = (l: number) => [
    ...get(MASK),
    I32_CONST,
    1 << l,
    I32_AND,
    IF,
    VOID,
    ...get(OUT),
    ...get(COUNT),
    I32_CONST,
    2,
    I32_SHL,
    I32_ADD,
    ...get(J),
    I32_CONST,
    2,
    I32_SHR_U,
    I32_CONST,
    l,
    I32_ADD,
    I32_STORE,
    2,
    0,
    ...get(COUNT),
    I32_CONST,
    1,
    I32_ADD,
    ...set(COUNT),
    END,
  ];
  const body: number[] = [
    ...get(CUT),
    ...F32X4_SPLAT,
    ...set(CUTV),
    ...get(ROW_SCALE),
    ...F32X4_SPLAT,
    ...set(SCALEV),
    ...get(N),
    I32_CONST,
    2,
    I32_SHL,
    ...set(N),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(J),
    ...get(N),
    I32_GE_U,
    BR_IF,
    1,
    ...load(ACC),
    ...F32X4_CONVERT_I32X4_S,
    ...load(CS),
    ...F32X4_MUL,
    ...get(SCALEV),
    ...F32X4_MUL,
    ...load(CB),
    ...F32X4_ADD,
    ...get(CUTV),
    ...F32X4_GT,
    ...I32X4_BITMASK,
    ...set(MASK),
    ...get(MASK),
    IF,
    VOID,
    ...[0, 1, 2, 3].flatMap(emit),
    END,
    ...get(J),
    I32_CONST,
    16,
    I32_ADD,
    ...set(J),
    BR,
    0,
    END,
    END,
    ...get(COUNT),
    END,
  ];
  const code = [...vec([[3, I32], [2, V128]]), ...body];
  const params = vec([[I32], [I32], [I32], [I32], [F32], [F32], [I32]]);
  return new Uint8Array([
    ...MODULE_HEADER,
    ...section(1, vec([[0x60, ...params, ...vec([[I32]])]])),
    // an unshared memory with a maximum of 4 GiB (flags 1)
    ...section(2, vec([[...name("env"), ...name("mem"), 0x02, 0x01, ...uleb(1), ...uleb(65536)]])),
    ...section(3, vec([[0]])),
    ...section(7, vec([[...name("scan"), 0x00, 0]])),
    ...section(10, vec([[...uleb(code.length), ...code]])),
  ]);
}

let compiled: WebAssembly.Module | undefined;

type ScanFn = (
  acc: number,
  cs: number,
  cb: number,
  n: number,
  cut: number,
  rowScale: number,
  out: number,
) => number;

/**
 * How far the f32 test's `cut` must be lowered so that it keeps every column
 * the f64 test `acc·cs·rowScale + cb > cut` keeps, for `cut ≤ 0`: the f32
 * conversion, `cs`'s rounding to f32, the two products and the sum each round
 * by at most 2⁻²⁴ relative, and near the cut `|acc·cs·rowScale| ≤ |cut| +
 * |cb|`; 2⁻²¹ is 8·2⁻²⁴, above the resulting 5·2⁻²⁴ with room to spare.
 *
 * @example
 * ```ts
 * scanSlack(-2, 1) > 0; // true
 * ```
 */
export function scanSlack(cut: number, maxAbsBias: number): number {
  return 2 ** -21 * (Math.abs(cut) + maxAbsBias) + 1e-30;
}

/** One region of accumulations, leased for one batch. */
export interface AccRegion {
  /** `[tokens, dSae]` int32, a view into the scan's memory: onnxruntime writes it. */
  readonly acc: Int32Array;
  /** Byte address of the region. */
  readonly address: number;
}

/**
 * The SIMD scan with its memory: column factors, an index buffer and a pool
 * of accumulation regions.
 *
 * @example
 * ```ts
 * const scan = new WasmScan(8);
 * scan.setColumns(new Float32Array(8).fill(0.5), new Float32Array(8).fill(-1));
 * const region = scan.lease(1)!;
 * region.acc.set([0, 1, 2, 3, 4, 5, 6, 7]);
 * [...scan.row(region, 0, 1)]; // columns with 0.5·acc − 1 > 1: [5, 6, 7]
 * scan.release(region);
 * ```
 */
export class WasmScan {
  readonly dSae: number;
  readonly #memory: WebAssembly.Memory;
  readonly #scan: ScanFn;
  readonly #n4: number;
  readonly #csAt = 0;
  readonly #cbAt: number;
  readonly #outAt: number;
  /** Byte address of the first region. */
  readonly #regionsAt: number;
  #end: number;
  /** Free regions by capacity in tokens. */
  readonly #free: { address: number; tokens: number }[] = [];
  readonly #leased = new Map<number, number>();

  constructor(dSae: number) {
    this.dSae = dSae;
    this.#n4 = dSae & ~3;
    this.#cbAt = dSae * 4;
    this.#outAt = this.#cbAt + dSae * 4;
    this.#regionsAt = Math.ceil((this.#outAt + dSae * 4) / 64) * 64;
    this.#end = this.#regionsAt;
    this.#memory = new WebAssembly.Memory({
      initial: Math.ceil(this.#end / PAGE) + 1,
      maximum: 65536,
    });
    compiled ??= new WebAssembly.Module(scanModule() as BufferSource);
    const instance = new WebAssembly.Instance(compiled, { env: { mem: this.#memory } });
    this.#scan = instance.exports.scan as ScanFn;
  }

  /** The columns' scale (`columnScale`, rounded to f32) and bias, set once at load. */
  setColumns(cs: ArrayLike<number>, cb: ArrayLike<number>): void {
    new Float32Array(this.#memory.buffer, this.#csAt, this.dSae).set(cs);
    new Float32Array(this.#memory.buffer, this.#cbAt, this.dSae).set(cb);
  }

  /**
   * A region for `tokens` rows of accumulations (a free one that is large
   * enough, else new memory), valid until {@linkcode release}; null when the
   * memory would have to grow while another region is out (growing detaches
   * the views onnxruntime may be writing through) or past `maxBytes` (64 MiB:
   * the memory is never given back, so it bounds what each encoder keeps).
   */
  lease(tokens: number, maxBytes = 64 * 2 ** 20): AccRegion | null {
    const bytes = tokens * this.dSae * 4;
    if (this.#leased.size === 0 && !this.#free.some((r) => r.tokens >= tokens)) {
      // nothing is out: start the regions over, so batch sizes that change do not pile up regions
      this.#free.length = 0;
      this.#end = this.#regionsAt;
    }
    let at = this.#free.findIndex((r) => r.tokens >= tokens);
    let region: { address: number; tokens: number };
    if (at >= 0) region = this.#free.splice(at, 1)[0];
    else {
      const step = Math.ceil(bytes / 64) * 64;
      const end = this.#end + step;
      const have = this.#memory.buffer.byteLength;
      if (end > have && (this.#leased.size > 0 || end > maxBytes)) return null;
      if (end > have) {
        // room for a spare region of the same size too: a second batch in flight then needs no growth
        const spare = end + step <= maxBytes ? step : 0;
        this.#memory.grow(Math.ceil((end + spare - have) / PAGE));
        if (spare) this.#free.push({ address: end, tokens });
        this.#end = end + spare;
      } else this.#end = end;
      region = { address: end - step, tokens };
    }
    at = region.address;
    this.#leased.set(at, region.tokens);
    return { address: at, acc: new Int32Array(this.#memory.buffer, at, tokens * this.dSae) };
  }

  /** Give a region back to the pool. */
  release(region: AccRegion): void {
    const tokens = this.#leased.get(region.address);
    if (tokens === undefined) return;
    this.#leased.delete(region.address);
    this.#free.push({ address: region.address, tokens });
  }

  /**
   * Row `t` of `region`: the columns that pass the f32 test against `cut`
   * (already lowered by the caller's slack), ascending. The view is valid
   * until the next call.
   */
  row(region: AccRegion, t: number, cut: number, rowScale = 1): Uint32Array {
    const base = region.address + t * this.dSae * 4;
    let count = this.#scan(base, this.#csAt, this.#cbAt, this.#n4, cut, rowScale, this.#outAt);
    const out = new Uint32Array(this.#memory.buffer, this.#outAt, this.dSae);
    if (this.#n4 < this.dSae) {
      // the last 1–3 columns, in the same f32 arithmetic
      const acc = new Int32Array(this.#memory.buffer, base, this.dSae);
      const cs = new Float32Array(this.#memory.buffer, this.#csAt, this.dSae);
      const cb = new Float32Array(this.#memory.buffer, this.#cbAt, this.dSae);
      const f = Math.fround;
      const cut32 = f(cut); // as the SIMD lanes compare
      for (let j = this.#n4; j < this.dSae; j++) {
        if (f(f(f(f(acc[j]) * cs[j]) * f(rowScale)) + cb[j]) > cut32) out[count++] = j;
      }
    }
    return out.subarray(0, count);
  }
}
