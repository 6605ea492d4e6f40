/**
 * The watched encoder's small f32 product in native code (`lw_sgemm` in
 * `native/kernels.c`, AVX-512 FMA): `out[m, n] = x[m, k]·W[k, n]` for a few
 * tokens and a few hundred watched latents, synchronously on the calling
 * thread, each output one chain of fused multiply-adds over `k` in order,
 * and the bias and ReLU or JumpReLU after it where asked.
 *
 * Why: a watched encode of 16 tokens × 64 latents × 768 took onnxruntime
 * 34–46 µs on this machine (most of it the run's set-up and the
 * `setImmediate` turn onnxruntime-node defers it to) and the WebAssembly
 * dots 80 µs; this kernel's product takes 10 µs (docs/performance.md).
 *
 * @module
 */
import { alignedArray } from "./aligned.ts";
import { collapseHugePages } from "./huge_pages.ts";
import { loadLibrary, type NativeLibrary } from "./native_library.ts";

/** The widest packed panel, in columns (four AVX-512 registers). */
const MAX_PANEL = 64;

/** What follows the product in the kernel (`act` in `kernels.c`). */
export type SgemmActivation =
  | { kind: "none" }
  /** `h = dot + bias[j]`, then `h > 0 ? h : 0`. */
  | { kind: "relu"; bias: Float32Array }
  /** `h = dot + bias[j]`, then `h > level[j] ? h : 0`. */
  | { kind: "jumprelu"; bias: Float32Array; level: Float32Array };

const ACT = { none: 0, relu: 1, jumprelu: 2 } as const;

/**
 * `W` packed for {@linkcode NativeSgemm.run}, or null where the native
 * kernels do not load (`nativeKernelsStatus` says why).
 *
 * @example
 * ```ts
 * // W = [[1, 2], [3, 4], [5, 6]]: k 3, n 2
 * const gemm = await openNativeSgemm(new Float32Array([1, 2, 3, 4, 5, 6]), 3, 2);
 * const out = new Float32Array(2);
 * gemm?.run(new Float32Array([1, 1, 1]), 1, out); // out = [9, 12]
 * ```
 */
export async function openNativeSgemm(
  w: Float32Array,
  k: number,
  n: number,
): Promise<NativeSgemm | null> {
  // a wrong W is refused on every machine, not only where the kernels load
  checkW(w, k, n);
  const got = await loadLibrary();
  return got instanceof Error ? null : new NativeSgemm(got.lib, w, k, n);
}

/** `x·W` for a fixed `W` (`[k, n]`), a few rows at a time. */
export class NativeSgemm {
  readonly #lib: NativeLibrary;
  readonly #packed: Float32Array;
  /** Registers (16 columns each) per packed panel: W narrower than 64 is not padded to 64. */
  readonly #nq: number;
  readonly k: number;
  readonly n: number;

  /** @internal use {@linkcode openNativeSgemm} */
  constructor(lib: NativeLibrary, w: Float32Array, k: number, n: number) {
    checkW(w, k, n);
    this.#lib = lib;
    this.k = k;
    this.n = n;
    this.#nq = Math.min(MAX_PANEL, 16 * Math.ceil(n / 16)) / 16;
    this.#packed = packPanels(w, k, n, 16 * this.#nq);
  }

  /**
   * `out[0, m·n)` = `x[m, k]·W`, row-major; with `sub` (`k` values), each
   * row of `x` less `sub` first, in f32 (the encoder graph's `x − b_dec`);
   * `activation` (default none) applied to each output in the kernel.
   */
  run(
    x: Float32Array,
    m: number,
    out: Float32Array,
    opts: { sub?: Float32Array; activation?: SgemmActivation } = {},
  ): void {
    const { sub } = opts;
    const act = opts.activation ?? { kind: "none" };
    const bias = act.kind === "none" ? null : act.bias;
    const level = act.kind === "jumprelu" ? act.level : null;
    const wrong = x.length < m * this.k || out.length < m * this.n ||
      (sub !== undefined && sub.length !== this.k) ||
      (bias !== null && bias.length !== this.n) || (level !== null && level.length !== this.n);
    if (wrong) {
      throw new RangeError(
        `expected x of ${m}×${this.k}, out of ${m}×${this.n} values at least, sub of ${this.k} ` +
          `and bias and level of ${this.n}, found ${x.length}, ${out.length}, ` +
          `${sub?.length ?? "none"}, ${bias?.length ?? "none"} and ${level?.length ?? "none"}`,
      );
    }
    if (m === 0) return;
    this.#lib.symbols.lw_sgemm(
      x,
      m,
      this.k,
      this.#packed,
      this.n,
      this.#nq,
      out,
      sub ?? null,
      bias,
      level,
      ACT[act.kind],
    );
  }
}

/** W must hold `k·n` values, or a RangeError says what it held. */
function checkW(w: Float32Array, k: number, n: number): void {
  if (w.length !== k * n) {
    throw new RangeError(`expected W of ${k}×${n} = ${k * n} values, found ${w.length}`);
  }
}

/** W (`[k, n]` row-major) as panels of `width` columns: `k` rows of `width` each, zero-padded. */
function packPanels(w: Float32Array, k: number, n: number, width: number): Float32Array {
  const panels = Math.ceil(n / width);
  const packed = alignedArray(Float32Array, panels * k * width, { hugePages: true });
  for (let p = 0; p < panels; p++) {
    const cols = Math.min(width, n - p * width);
    for (let i = 0; i < k; i++) {
      packed.set(w.subarray(i * n + p * width, i * n + p * width + cols), (p * k + i) * width);
    }
  }
  // where the allocator handed back memory it had touched, the advice came too late
  collapseHugePages(packed);
  return packed;
}
