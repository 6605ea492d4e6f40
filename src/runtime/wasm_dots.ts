/**
 * Exact f32 dot products of one input row with chosen rows of a matrix,
 * in WebAssembly SIMD (f32x4, four accumulators of four lanes): the second
 * pass of the candidate encoder (`candidate_encoder.ts`), which recomputes
 * only the latents a low-precision pass could not rule out. The module is
 * a few hundred bytes written here (no toolchain, nothing fetched).
 *
 * Memory: `W^T` (`[rows, stride]`, each row padded with zeros to a multiple
 * of 16 floats) from byte 0, then a scratch area for inputs, candidate row
 * indices and outputs, grown when a batch needs more.
 *
 * Each dot is summed in f32: lane-wise over four accumulators, then the
 * accumulators and their lanes in a fixed order. It differs from another
 * f32 GEMM's result only by rounding (at most d·2⁻²⁴·Σ|x_i·w_i|).
 *
 * @module
 */

import { adviseHugePages, collapseHugePages } from "./huge_pages.ts";
import {
  BLOCK,
  BR,
  BR_IF,
  END,
  F32_ADD,
  F32_STORE,
  F32X4_ADD,
  F32X4_MUL,
  get,
  I32,
  I32_ADD,
  I32_CONST,
  I32_GE_U,
  I32_LOAD,
  I32_LT_U,
  I32_SHL,
  I32_SHR_U,
  I32X4_EXTEND_HIGH_I16X8_U,
  I32X4_EXTEND_LOW_I16X8_U,
  I32X4_SHL,
  lane,
  LOOP,
  MODULE_HEADER,
  name,
  section,
  set,
  sleb,
  uleb,
  V128,
  V128_CONST_ZERO,
  V128_LOAD,
  vec,
  VOID,
} from "./wasm_asm.ts";
import type { NativeDots } from "./native_kernels.ts";

/** Floats per row step of the kernel's inner loop (four f32x4 accumulators). */
export const DOT_STRIDE_FLOATS = 16;
const PAGE = 65536;
/** 4 GiB: the most a 32-bit WebAssembly memory can address. */
const MAX_PAGES = 65536;
/** A worker without a job for this long is stopped. */
const WORKER_IDLE_MS = 1000;
/** Multiply-adds below which a second thread costs more than it saves. */
const PARALLEL_MIN_MACS = 1 << 20;
/** The same for the native kernel: faster per dot, and an FFI worker's call costs about 0.1 ms. */
const NATIVE_PARALLEL_MIN_MACS = 4 << 20;

/**
 * How the matrix's rows are held: `f32`, or `bf16` (the upper half of each
 * f32, half the bytes to read) for a matrix whose every value is a bf16.
 */
export type RowFormat = "f32" | "bf16";

/** Whether every value of `m` is exactly a bf16 (its f32 bits' lower half zero). */
export function isBf16Exact(m: Float32Array): boolean {
  const bits = new Uint32Array(m.buffer, m.byteOffset, m.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i] & 0xffff) !== 0) return false;
  return true;
}

/**
 * The kernel's load of accumulator `k`'s four weights at element offset `i`
 * of the row at `w` (`i` in bytes of f32). A bf16 row holds them in the
 * upper halves: widened in registers, `(u16 → u32) << 16` is the f32 exactly,
 * so both formats give the same bits.
 */
function weightLoad(format: RowFormat, w: number, i: number, k: number): number[] {
  if (format === "f32") return [...get(w), ...get(i), I32_ADD, ...V128_LOAD, 4, ...uleb(16 * k)];
  return [
    ...get(w),
    ...get(i),
    I32_CONST,
    1,
    I32_SHR_U,
    I32_ADD,
    ...V128_LOAD,
    4,
    ...uleb(16 * (k >> 1)),
    ...(k % 2 === 0 ? I32X4_EXTEND_LOW_I16X8_U : I32X4_EXTEND_HIGH_I16X8_U),
    I32_CONST,
    16,
    ...I32X4_SHL,
  ];
}

/**
 * `dots(pairs, n, stride, out)`: for c < n, with `x = pairs[2c]` and
 * `w = pairs[2c + 1]` (byte addresses of two rows of `stride` values, a
 * multiple of 16: x in f32, w in `format`), `out[c] = Σ_i x[i]·w[i]`.
 */
function dotsModule(format: RowFormat): Uint8Array {
  // params 0..3: pairs, n, stride, out; locals: 4 c, 5 x, 6 w, 7 i, 8 rowBytes, 9..12 acc
  const [PAIRS, N, STRIDE, OUT, C, X, W, I, ROW] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const ACC = [9, 10, 11, 12];
  const pairAt = [...get(PAIRS), ...get(C), I32_CONST, 3, I32_SHL, I32_ADD];
  const body: number[] = [
    ...get(STRIDE),
    I32_CONST,
    2,
    I32_SHL,
    ...set(ROW),
    I32_CONST,
    0,
    ...set(C),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(C),
    ...get(N),
    I32_GE_U,
    BR_IF,
    1,
    ...pairAt,
    I32_LOAD,
    2,
    0,
    ...set(X),
    ...pairAt,
    I32_LOAD,
    2,
    4,
    ...set(W),
    ...ACC.flatMap((a) => [...V128_CONST_ZERO, ...set(a)]),
    I32_CONST,
    0,
    ...set(I),
    LOOP,
    VOID,
    ...ACC.flatMap((a, k) => [
      ...get(a),
      ...get(X),
      ...get(I),
      I32_ADD,
      ...V128_LOAD,
      4,
      ...uleb(16 * k),
      ...weightLoad(format, W, I, k),
      ...F32X4_MUL,
      ...F32X4_ADD,
      ...set(a),
    ]),
    ...get(I),
    I32_CONST,
    ...sleb(64),
    I32_ADD,
    ...set(I),
    ...get(I),
    ...get(ROW),
    I32_LT_U,
    BR_IF,
    0,
    END,
    // (a0 + a1) + (a2 + a3), then lanes (0 + 1) + (2 + 3)
    ...get(ACC[0]),
    ...get(ACC[1]),
    ...F32X4_ADD,
    ...get(ACC[2]),
    ...get(ACC[3]),
    ...F32X4_ADD,
    ...F32X4_ADD,
    ...set(ACC[0]),
    ...get(OUT),
    ...get(C),
    I32_CONST,
    2,
    I32_SHL,
    I32_ADD,
    ...get(ACC[0]),
    ...lane(0),
    ...get(ACC[0]),
    ...lane(1),
    F32_ADD,
    ...get(ACC[0]),
    ...lane(2),
    ...get(ACC[0]),
    ...lane(3),
    F32_ADD,
    F32_ADD,
    F32_STORE,
    2,
    0,
    ...get(C),
    I32_CONST,
    1,
    I32_ADD,
    ...set(C),
    BR,
    0,
    END,
    END,
    END,
  ];
  const locals = vec([[5, I32], [4, V128]]);
  const code = [...locals, ...body];
  return new Uint8Array([
    ...MODULE_HEADER,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32]]), 0]])),
    // a shared memory of at most 4 GiB (flags 3: shared, with a maximum)
    ...section(
      2,
      vec([[...name("env"), ...name("mem"), 0x02, 0x03, ...uleb(1), ...uleb(MAX_PAGES)]]),
    ),
    ...section(3, vec([[0]])),
    ...section(7, vec([[...name("dots"), 0x00, 0]])),
    ...section(10, vec([[...uleb(code.length), ...code]])),
  ]);
}

const compiled = new Map<RowFormat, WebAssembly.Module>();

type DotsFn = (pairs: number, n: number, stride: number, out: number) => void;

/** Views of the scratch area, valid until the next {@linkcode WasmDots.prepare}. */
export interface DotsScratch {
  /** Input rows, `stride` floats apart (padding zero): row r at `r·stride`. */
  inputs: Float32Array;
  /** Pairs of byte addresses: `pairs[2c]` an input row, `pairs[2c + 1]` a matrix row. */
  pairs: Uint32Array;
  /** `results[c]`: the dot of pair c, after {@linkcode WasmDots.run}. */
  results: Float32Array;
}

/**
 * A matrix's rows held in WebAssembly memory, and dot products of input rows
 * with chosen ones.
 *
 * @example
 * ```ts
 * // W^T of a 3-input, 2-latent encoder: row j is latent j's encoder column
 * const dots = new WasmDots(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3);
 * const s = dots.prepare(1, 2);
 * s.inputs.set([1, 0, -1]);
 * s.pairs.set([dots.inputAddress(0), dots.rowAddress(1), dots.inputAddress(0), dots.rowAddress(0)]);
 * dots.run(2);
 * [...s.results.subarray(0, 2)]; // [-2, -2]
 * ```
 */
export class WasmDots {
  /** Rows of the matrix (latents). */
  readonly rows: number;
  /** Floats per row as given. */
  readonly width: number;
  /** Values per row in memory (width padded to a multiple of 16). */
  readonly stride: number;
  /** How the rows are held (`bf16`: half the bytes, for a matrix of bf16 values). */
  readonly rowFormat: RowFormat;
  readonly #rowBytes: number;
  readonly #module: WebAssembly.Module;
  readonly #memory: WebAssembly.Memory;
  readonly #dots: DotsFn;
  /** Byte address of the scratch area (after the matrix). */
  readonly #scratch: number;
  #inputRows = 0;
  #maxPairs = 0;
  #views: DotsScratch | null = null;
  readonly #threads: 1 | 2;
  /** The second thread: started for a large job, stopped after a second without one. */
  #worker: Worker | null = null;
  #pending: (() => void) | null = null;
  #idle: ReturnType<typeof setTimeout> | undefined;
  /** The native kernel (AVX-512), when attached: {@linkcode WasmDots.useNative}. */
  #native: NativeDots | null = null;

  /**
   * Copy `matrix` (`[rows, width]`, row-major) into WebAssembly memory;
   * `threads: 2` runs half of each large job on a worker. `rowFormat`
   * (default `f32`): `auto` holds the rows as bf16 when every value is one
   * (the same results from half the bytes), `bf16` insists (a value that is
   * not a bf16 is a `RangeError`).
   */
  constructor(
    matrix: Float32Array,
    rows: number,
    width: number,
    opts: { threads?: 1 | 2; rowFormat?: RowFormat | "auto" } = {},
  ) {
    if (matrix.length !== rows * width) {
      throw new RangeError(
        `expected a ${rows}×${width} matrix (${rows * width} floats), found ${matrix.length}`,
      );
    }
    this.rows = rows;
    this.width = width;
    this.stride = Math.ceil(width / DOT_STRIDE_FLOATS) * DOT_STRIDE_FLOATS;
    const asked = opts.rowFormat ?? "f32";
    const exact = asked !== "f32" && isBf16Exact(matrix);
    if (asked === "bf16" && !exact) {
      throw new RangeError(
        "rowFormat bf16: expected every matrix value to be a bf16, found one that is not",
      );
    }
    this.rowFormat = exact ? "bf16" : "f32";
    this.#rowBytes = this.stride * (this.rowFormat === "bf16" ? 2 : 4);
    this.#scratch = rows * this.#rowBytes;
    this.#memory = new WebAssembly.Memory({
      initial: Math.ceil(this.#scratch / PAGE) + 1,
      maximum: MAX_PAGES,
      shared: true,
    });
    let module = compiled.get(this.rowFormat);
    if (!module) {
      module = new WebAssembly.Module(dotsModule(this.rowFormat) as BufferSource);
      compiled.set(this.rowFormat, module);
    }
    this.#module = module;
    this.#threads = opts.threads ?? 1;
    const instance = new WebAssembly.Instance(module, { env: { mem: this.#memory } });
    this.#dots = instance.exports.dots as DotsFn;
    // the rows are read at random on every batch: huge pages, asked for before they are written
    const rowBytes = new Uint8Array(this.#memory.buffer, 0, this.#scratch);
    adviseHugePages(rowBytes);
    if (this.rowFormat === "bf16") this.#storeBf16(matrix);
    else {
      const heap = new Float32Array(this.#memory.buffer, 0, rows * this.stride);
      if (this.stride === width) heap.set(matrix);
      else {
        for (let r = 0; r < rows; r++) {
          heap.set(matrix.subarray(r * width, (r + 1) * width), r * this.stride);
        }
      }
    }
    // fresh memory faults in huge after the advice; this catches whatever did not
    collapseHugePages(rowBytes);
  }

  /** Each value's upper 16 bits (exactly it, for a bf16), rows `stride` apart. */
  #storeBf16(matrix: Float32Array): void {
    const { rows, width, stride } = this;
    const bits = new Uint32Array(matrix.buffer, matrix.byteOffset, matrix.length);
    const heap = new Uint16Array(this.#memory.buffer, 0, rows * stride);
    for (let r = 0; r < rows; r++) {
      const from = r * width, to = r * stride;
      for (let i = 0; i < width; i++) heap[to + i] = bits[from + i] >>> 16;
    }
  }

  /** Room for `inputRows` input rows and `maxPairs` pairs; the views of it. */
  prepare(inputRows: number, maxPairs: number): DotsScratch {
    if (this.#views && inputRows <= this.#inputRows && maxPairs <= this.#maxPairs) {
      return this.#views;
    }
    const rowsBefore = this.#views ? this.#inputRows : 0;
    this.#inputRows = Math.max(inputRows, this.#inputRows);
    this.#maxPairs = Math.max(maxPairs, this.#maxPairs, 1024);
    const pairsAt = this.#scratch + this.#inputRows * this.stride * 4;
    const resultsAt = pairsAt + this.#maxPairs * 8;
    const need = resultsAt + this.#maxPairs * 4;
    const have = this.#memory.buffer.byteLength;
    if (need > have) this.#memory.grow(Math.ceil((need - have) / PAGE));
    const buffer = this.#memory.buffer;
    this.#views = {
      inputs: new Float32Array(buffer, this.#scratch, this.#inputRows * this.stride),
      pairs: new Uint32Array(buffer, pairsAt, this.#maxPairs * 2),
      results: new Float32Array(buffer, resultsAt, this.#maxPairs),
    };
    // the input rows' padding is never written by callers and meets the matrix's zero padding, so
    // it must be 0: new rows may cover what held pairs and results (NaN × 0 would be NaN). Rows
    // already there keep their values (callers write inputs, then may grow the pairs)
    this.#views.inputs.fill(0, rowsBefore * this.stride);
    return this.#views;
  }

  /** Byte address of input row `row` (for `pairs`). */
  inputAddress(row: number): number {
    return this.#scratch + row * this.stride * 4;
  }

  /** Byte address of matrix row `row` (for `pairs`). */
  rowAddress(row: number): number {
    return row * this.#rowBytes;
  }

  /** Compute the dots of the first `n` pairs into `results` on this thread, before returning. */
  runHere(n: number): void {
    const v = this.#checked(n);
    this.#dots(v.pairs.byteOffset, n, this.stride, v.results.byteOffset);
  }

  #checked(n: number): DotsScratch {
    const v = this.#views;
    if (!v || n > this.#maxPairs) {
      throw new RangeError(`expected n ≤ ${this.#maxPairs} pairs after prepare(), found ${n}`);
    }
    return v;
  }

  /**
   * Run {@linkcode WasmDots.run} with a native kernel over the same memory
   * and pairs (`native_kernels.ts`; null: WebAssembly again). The dots are
   * the same up to f32 rounding (the summation order differs).
   */
  useNative(native: NativeDots | null): void {
    this.#native = native;
  }

  /** Which kernel {@linkcode WasmDots.run} uses: `native` (AVX-512) or `wasm`. */
  get kernel(): "native" | "wasm" {
    return this.#native ? "native" : "wasm";
  }

  /** Compute the dots of the first `n` pairs into `results`. */
  async run(n: number): Promise<void> {
    const v = this.#checked(n);
    if (this.#native) {
      await this.#native.run({
        memory: new Uint8Array(this.#memory.buffer),
        pairs: v.pairs,
        n,
        stride: this.stride,
        bf16: this.rowFormat === "bf16",
        out: v.results,
        parts: this.#threads === 2 && n * this.stride >= NATIVE_PARALLEL_MIN_MACS ? 2 : 1,
      });
      return;
    }
    const pairs = v.pairs.byteOffset, out = v.results.byteOffset;
    if (this.#threads === 1 || n * this.stride < PARALLEL_MIN_MACS) {
      this.#dots(pairs, n, this.stride, out);
      return;
    }
    // the worker takes the second half while this thread does the first
    const half = n >> 1;
    const worker = this.#startWorker();
    const done = new Promise<void>((resolve) => this.#pending = resolve);
    worker.postMessage({
      pairs: pairs + half * 8,
      n: n - half,
      stride: this.stride,
      out: out + half * 4,
    });
    this.#dots(pairs, half, this.stride, out);
    await done;
    // an idle worker would keep the process alive: stop it after a second without work
    const idle = setTimeout(() => this.close(), WORKER_IDLE_MS);
    Deno.unrefTimer(idle);
    this.#idle = idle;
  }

  #startWorker(): Worker {
    clearTimeout(this.#idle);
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL("./wasm_dots_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.postMessage({ module: this.#module, memory: this.#memory });
    worker.onmessage = () => {
      const done = this.#pending;
      this.#pending = null;
      done?.();
    };
    return this.#worker = worker;
  }

  /** Stop the worker, if any (a later large job starts it again). */
  close(): void {
    clearTimeout(this.#idle);
    this.#worker?.terminate();
    this.#worker = null;
  }
}
