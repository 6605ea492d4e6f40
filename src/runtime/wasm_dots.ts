/**
 * Exact f32 dot products of one input row with chosen rows of a matrix,
 * in WebAssembly SIMD (f32x4, four accumulators of four lanes): the second
 * pass of the candidate encoder (`candidate_encoder.ts`), which recomputes
 * only the latents a low-precision pass could not rule out. The module is
 * a few hundred bytes written in `wasm_dots_kernel.ts` (no toolchain,
 * nothing fetched).
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
  type DotsFn,
  dotsModule,
  isBf16Exact,
  MAX_PAGES,
  type RowFormat,
} from "./wasm_dots_kernel.ts";
import type { NativeDots } from "./native_kernels.ts";

export { isBf16Exact, type RowFormat } from "./wasm_dots_kernel.ts";

/** Floats per row step of the kernel's inner loop (four f32x4 accumulators). */
export const DOT_STRIDE_FLOATS = 16;
const PAGE = 65536;
/** A worker without a job for this long is stopped. */
const WORKER_IDLE_MS = 1000;
/** Multiply-adds below which a second thread costs more than it saves. */
const PARALLEL_MIN_MACS = 1 << 20;
/** The same for the native kernel: faster per dot, and an FFI worker's call costs about 0.1 ms. */
const NATIVE_PARALLEL_MIN_MACS = 4 << 20;

const compiled = new Map<RowFormat, WebAssembly.Module>();

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
