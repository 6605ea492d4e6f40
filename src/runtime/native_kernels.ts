/**
 * The candidate encoder's hot loops in native code (`native/kernels.c`):
 * the int8 product of the first pass (`acc = Σ (q − 128)·Ŵ`, exact int32,
 * AVX-512 VNNI: about 1.6× onnxruntime's `MatMulInteger` on the bench
 * machine), TopK's scores and k-th, the candidate scan (the same f64
 * arithmetic as `candidate_scan.ts`) and the exact f32 dots of the second
 * pass (AVX-512 FMA, the next weight row prefetched). `native_library.ts`
 * compiles the C on first use and loads it through Deno's FFI; the work is
 * split between this thread and FFI worker threads.
 *
 * Everything here is optional: without a CPU with AVX-512 VNNI, a compiler,
 * or all permissions (`-A`: FFI, running the compiler, and `/proc/cpuinfo`,
 * which Deno lets a program read only with `--allow-all`),
 * {@linkcode nativeKernelsStatus} says why, and the candidate encoder keeps
 * onnxruntime's product and the WebAssembly dots (the same integers, and
 * the same dots up to f32 rounding).
 *
 * @module
 */
import { alignedArray } from "./aligned.ts";
import { collapseHugePages } from "./huge_pages.ts";
import {
  loadLibrary,
  NativeKernelsUnavailableError,
  type NativeLibrary,
} from "./native_library.ts";
import { type Split, SplitTuner } from "./split_tuner.ts";

export {
  buildNativeKernels,
  type NativeKernelsStatus,
  nativeKernelsStatus,
  NativeKernelsUnavailableError,
} from "./native_library.ts";

/** The largest `d_in` whose sums stay within int32 (|Σ| ≤ 128·255·K). */
export const MAX_NATIVE_D_IN = 65536;

/**
 * Why the native int8 kernel cannot take `dIn` (undefined: it can).
 *
 * @example
 * ```ts
 * nativeDInReason(70000); // "the native int8 kernel takes d_in ≤ 65536 (int32 sums), found 70000"
 * ```
 */
export function nativeDInReason(dIn: number): string | undefined {
  return dIn > MAX_NATIVE_D_IN
    ? `the native int8 kernel takes d_in ≤ ${MAX_NATIVE_D_IN} (int32 sums), found ${dIn}`
    : undefined;
}
/**
 * Multiply-adds from which the product is always split between threads.
 * Below it, each token count times both ways on its first calls and keeps
 * the faster ({@linkcode SplitTuner}): handing a call to an FFI worker
 * thread and hearing back took about 0.1 ms, and one thread computed 18.9M
 * multiply-adds (one token of 768 → 24576) in 0.19 ms on one host and 0.66
 * ms on another (0.45 split); 2304 → 16384 (37.7M) took 0.70 ms on one
 * thread and 0.47 on two.
 */
const PARALLEL_MIN_MACS = 24 << 20;
const COLUMNS_PER_PANEL = 64;

/**
 * Load the kernel and pack `Ŵ` (`int8 [dIn, dSae]`, row-major) for it; the
 * error says why when it cannot be used here.
 *
 * @example
 * ```ts
 * const wq = new Int8Array([1, -2, 3, 4, 5, -6]); // d_in 2, d_sae 3
 * const gemm = await openNativeInt8(wq, 2, 3);
 * const acc = new Int32Array(3);
 * await gemm.run(new Uint8Array([129, 126]), 1, acc); // q − 128 = [1, −2]
 * [...acc]; // [−7, −12, 15]
 * ```
 */
export async function openNativeInt8(
  wq: Int8Array,
  dIn: number,
  dSae: number,
  opts: { threads?: number } = {},
): Promise<NativeInt8Gemm> {
  if (wq.length !== dIn * dSae) {
    throw new RangeError(`expected a ${dIn}×${dSae} int8 matrix, found ${wq.length} values`);
  }
  const tooWide = nativeDInReason(dIn);
  if (tooWide !== undefined) throw new NativeKernelsUnavailableError(tooWide);
  const got = await loadLibrary();
  if (got instanceof Error) throw got;
  return new NativeInt8Gemm(got.lib, wq, dIn, dSae, opts.threads ?? navigator.hardwareConcurrency);
}

/** The packed weights of one SAE and the product over them. */
export class NativeInt8Gemm {
  readonly dIn: number;
  readonly dSae: number;
  readonly #lib: NativeLibrary;
  readonly #packed: Uint8Array;
  readonly #threads: number;
  #prepared = new Uint8Array(0);
  /** Below PARALLEL_MIN_MACS: one thread or split, per token count, by measurement. */
  readonly #split = new SplitTuner();
  /** One product at a time: they share the prepared input. */
  #busy: Promise<unknown> = Promise.resolve();

  /** @internal use {@linkcode openNativeInt8} */
  constructor(lib: NativeLibrary, wq: Int8Array, dIn: number, dSae: number, threads: number) {
    this.#lib = lib;
    this.dIn = dIn;
    this.dSae = dSae;
    this.#threads = Math.max(1, Math.min(8, Math.floor(threads)));
    const bytes = Number(lib.symbols.lw_packed_bytes(dIn, dSae));
    this.#packed = alignedArray(Uint8Array, bytes, { hugePages: true });
    lib.symbols.lw_pack(wq, dIn, dSae, this.#packed);
    // where the allocator handed back memory it had touched, the advice came too late
    collapseHugePages(this.#packed);
  }

  /**
   * `acc[t, j] = Σ_i (q[t, i] − 128)·Ŵ[i, j]` for `tokens` rows of `q`
   * (`u8 [tokens, dIn]`) into `acc` (`int32 [tokens, dSae]`, e.g. a view of
   * WebAssembly memory that must not grow meanwhile).
   */
  run(q: Uint8Array, tokens: number, acc: Int32Array): Promise<void> {
    if (q.length < tokens * this.dIn || acc.length < tokens * this.dSae) {
      throw new RangeError(
        `expected ≥ ${tokens * this.dIn} inputs and room for ${tokens * this.dSae} sums, ` +
          `found ${q.length} and ${acc.length}`,
      );
    }
    const run = this.#busy.then(() => this.#product(q, tokens, acc));
    this.#busy = run.catch(() => {});
    return run;
  }

  /**
   * TopK, after {@linkcode NativeInt8Gemm.run}: turn each token's sums in
   * `acc` into its approximate scores in place (`a = f32(acc·columnScale_j·
   * tokenScale_t + columnBias_j)`, read them through a `Float32Array` of the
   * same memory) and return each token's k-th largest score.
   */
  async topkScores(acc: Int32Array, tokens: number, opts: {
    columnScale: Float64Array;
    columnBias: Float32Array;
    tokenScale: Float32Array;
    k: number;
  }): Promise<Float32Array> {
    const { columnScale, columnBias, tokenScale, k } = opts;
    if (k < 1 || k > this.dSae || tokenScale.length < tokens) {
      throw new RangeError(
        `expected 1 ≤ k ≤ ${this.dSae} and ${tokens} token scales, found k ${k} and ${tokenScale.length}`,
      );
    }
    const s = this.#lib.symbols;
    const kth = new Float32Array(tokens);
    // one heap of k per call, referenced here until both calls are done (the worker writes one)
    const heaps = [new Float32Array(k), new Float32Array(k)];
    // about 2 ns a score: split from a few hundred thousand
    const parts = tokens >= 2 && tokens * this.dSae >= 1 << 18 ? 2 : 1;
    const mid = parts === 2 ? tokens >> 1 : tokens;
    // tokens [t0, t1) with its own heap
    const args = (t0: number, t1: number, heap: Float32Array) =>
      [
        ...[acc, t0, t1, this.dSae, columnScale, columnBias, tokenScale],
        ...[k, heap, kth],
      ] as Parameters<typeof s.lw_topk_scores>;
    const other = parts === 2
      ? s.lw_topk_scores_async(...args(mid, tokens, heaps[1]))
      : Promise.resolve();
    s.lw_topk_scores(...args(0, mid, heaps[0]));
    await other;
    heaps.length = 0;
    return kth;
  }

  async #product(q: Uint8Array, tokens: number, acc: Int32Array): Promise<void> {
    const s = this.#lib.symbols;
    const need = Number(s.lw_prepared_bytes(tokens, this.dIn));
    if (this.#prepared.length < need) this.#prepared = new Uint8Array(need);
    s.lw_prepare(q, tokens, this.dIn, this.#prepared);
    const panels = Math.ceil(this.dSae / COLUMNS_PER_PANEL);
    const most = Math.min(this.#threads, panels);
    const small = most > 1 && tokens * this.dIn * this.dSae < PARALLEL_MIN_MACS;
    const way = small ? this.#split.choose(tokens) : "split";
    const timed = small && this.#split.tuning(tokens);
    const t0 = timed ? performance.now() : 0;
    const parts = way === "split" ? most : 1;
    const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round(panels * i / parts));
    // the other parts on FFI worker threads, the first on this one
    const others: Promise<void>[] = [];
    for (let p = 1; p < parts; p++) {
      others.push(
        s.lw_gemm_async(
          this.#prepared,
          tokens,
          this.dIn,
          this.#packed,
          this.dSae,
          acc,
          bounds[p],
          bounds[p + 1],
        ),
      );
    }
    s.lw_gemm(this.#prepared, tokens, this.dIn, this.#packed, this.dSae, acc, 0, bounds[1]);
    await Promise.all(others);
    if (timed) this.#split.record(tokens, way, performance.now() - t0);
  }

  /**
   * How products of `tokens` rows below the always-split size run, once
   * timed: on this thread alone or split; undefined while still timing (or
   * for a size that is always split).
   */
  splitChoice(tokens: number): Split | undefined {
    return this.#split.chosen(tokens);
  }
}

/**
 * The exact dots of the second pass (`wasm_dots.ts`'s pairs, over its
 * WebAssembly memory), or null where the native kernels do not load.
 *
 * @example
 * ```ts
 * const dots = await openNativeDots();
 * dots === null || typeof dots.run === "function"; // true
 * ```
 */
export async function openNativeDots(): Promise<NativeDots | null> {
  const got = await loadLibrary();
  return got instanceof Error ? null : new NativeDots(got.lib);
}

/** `lw_dots` over views of one memory, split between this thread and an FFI worker thread. */
export class NativeDots {
  readonly #lib: NativeLibrary;

  /** @internal use {@linkcode openNativeDots} */
  constructor(lib: NativeLibrary) {
    this.#lib = lib;
  }

  /**
   * For c < n: `out[c] = Σ_i x[i]·w[i]`, `x`, `w` the rows at the byte
   * offsets `pairs[2c]`, `pairs[2c + 1]` of `memory` (`stride` values each;
   * `w` f32, or bf16 upper halves); `parts` 2 runs the second half of the
   * pairs on a worker thread meanwhile.
   */
  async run(opts: {
    memory: Uint8Array;
    pairs: Uint32Array;
    n: number;
    stride: number;
    bf16: boolean;
    out: Float32Array;
    parts: 1 | 2;
  }): Promise<void> {
    const { memory, pairs, n, stride, out } = opts;
    const bf16 = opts.bf16 ? 1 : 0;
    const s = this.#lib.symbols;
    if (opts.parts === 1) return s.lw_dots(memory, pairs, n, stride, bf16, out);
    const half = n >> 1;
    const other = s.lw_dots_async(
      memory,
      pairs.subarray(2 * half),
      n - half,
      stride,
      bf16,
      out.subarray(half),
    );
    s.lw_dots(memory, pairs, half, stride, bf16, out);
    await other;
  }
}

/** One batch for {@linkcode NativeSelect.run}. */
export interface NativeSelectJob {
  /** `[tokens, n]`: int32 sums (the candidate graph's `acc`) or TopK's f32 scores. */
  values: Int32Array | Float32Array;
  tokens: number;
  /** Latents per token (`d_sae`). */
  n: number;
  columnScale: Float64Array;
  columnBias: Float32Array;
  /** The input's quantization scale: one per token, or one for the batch. */
  scale: Float32Array;
  /** `[tokens, 5]`: ‖x̂‖, ‖e‖, ‖xp‖, the uniform bound, the cut. */
  tokenBounds: Float32Array;
  /** The per-column bound factors (`candidate_graph.ts`). */
  bounds: { hat: Float64Array; err: Float64Array; x: Float64Array };
  /** Scan the tokens `[from, tokens)` only (default 0). */
  from?: number;
  /** Slots per token in `cand` and `upper`. */
  cap: number;
  /** Out: token t's kept latents from `(t − from)·cap`, ascending, and their upper bounds. */
  cand: Uint32Array;
  upper: Float32Array;
  /** Out: `[t − from]`, how many latents token t kept (more than `cap`: only `cap` written). */
  counts: Int32Array;
}

/**
 * The second pass's candidate scan in native code (`lw_select`): the same
 * double arithmetic, in the same order, as `candidate_scan.ts`'s loops,
 * so the same candidates; the tokens split between this thread and an FFI
 * worker thread.
 */
export class NativeSelect {
  readonly #lib: NativeLibrary;

  /** @internal use {@linkcode openNativeSelect} */
  constructor(lib: NativeLibrary) {
    this.#lib = lib;
  }

  /** Scan one batch (see {@linkcode NativeSelectJob}). */
  async run(job: NativeSelectJob): Promise<void> {
    const { values, tokens, n, cap, cand, upper, counts, tokenBounds, scale } = job;
    const from = job.from ?? 0, rows = tokens - from;
    if (values.length < tokens * n || cand.length < rows * cap || upper.length < rows * cap) {
      throw new RangeError(
        `expected ${tokens}×${n} values and ${rows}×${cap} slots, found ${values.length}, ` +
          `${cand.length} and ${upper.length}`,
      );
    }
    const s = this.#lib.symbols;
    const kind = values instanceof Float32Array ? 1 : 0;
    const perToken = scale.length >= tokens ? 1 : 0;
    // tokens [t0, t1), their slots and counts from the start of the views given
    const args = (t0: number, t1: number) => {
      const at = t0 - from;
      return [
        ...[values, kind, t0, t1, n, job.columnScale, job.columnBias, scale, perToken],
        ...[tokenBounds, job.bounds.hat, job.bounds.err, job.bounds.x, cap],
        ...[cand.subarray(at * cap), upper.subarray(at * cap), counts.subarray(at)],
      ] as Parameters<typeof s.lw_select>;
    };
    // about a nanosecond a latent: split past a few hundred thousand
    if (rows < 2 || rows * n < 1 << 18) return s.lw_select(...args(from, tokens));
    const mid = from + (rows >> 1);
    const other = s.lw_select_async(...args(mid, tokens));
    s.lw_select(...args(from, mid));
    await other;
  }
}

/**
 * The native candidate scan, or null where the native kernels do not load.
 *
 * @example
 * ```ts
 * const select = await openNativeSelect();
 * select === null || typeof select.run === "function"; // true
 * ```
 */
export async function openNativeSelect(): Promise<NativeSelect | null> {
  const got = await loadLibrary();
  return got instanceof Error ? null : new NativeSelect(got.lib);
}
