/**
 * The watched encoder's small f32 product in native code (`lw_sgemm` in
 * `native/kernels.c`, AVX-512 FMA): `out[m, n] = x[m, k]·W[k, n]` for a few
 * tokens and a few hundred watched latents, synchronously on the calling
 * thread, each output one chain of fused multiply-adds over `k` in order.
 *
 * Why: a watched batch of 16 tokens × 64 latents × 768 took onnxruntime
 * 25–29 µs on this machine (most of it the run's set-up and the
 * `setImmediate` turn onnxruntime-node defers it to) and the WebAssembly
 * dots 80 µs; this kernel takes a few µs (docs/performance.md).
 *
 * @module
 */
import { loadLibrary, type NativeLibrary } from "./native_library.ts";

/** Columns per packed panel (`NR` in `kernels.c`). */
const PANEL = 64;

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
  const got = await loadLibrary();
  return got instanceof Error ? null : new NativeSgemm(got.lib, w, k, n);
}

/** `x·W` for a fixed `W` (`[k, n]`), a few rows at a time. */
export class NativeSgemm {
  readonly #lib: NativeLibrary;
  readonly #packed: Float32Array;
  readonly k: number;
  readonly n: number;

  /** @internal use {@linkcode openNativeSgemm} */
  constructor(lib: NativeLibrary, w: Float32Array, k: number, n: number) {
    if (w.length !== k * n) {
      throw new RangeError(`expected W of ${k}×${n} = ${k * n} values, found ${w.length}`);
    }
    this.#lib = lib;
    this.k = k;
    this.n = n;
    this.#packed = packPanels(w, k, n);
  }

  /**
   * `out[0, m·n)` = `x[m, k]·W`, row-major; with `sub` (`k` values), each
   * row of `x` less `sub` first, in f32 (the encoder graph's `x − b_dec`).
   */
  run(x: Float32Array, m: number, out: Float32Array, sub?: Float32Array): void {
    if (x.length < m * this.k || out.length < m * this.n || (sub && sub.length !== this.k)) {
      throw new RangeError(
        `expected x of ${m}×${this.k}, out of ${m}×${this.n} values at least and sub of ` +
          `${this.k}, found ${x.length}, ${out.length} and ${sub?.length ?? "none"}`,
      );
    }
    if (m === 0) return;
    this.#lib.symbols.lw_sgemm(x, m, this.k, this.#packed, this.n, out, sub ?? null);
  }
}

/** W (`[k, n]` row-major) as panels of 64 columns: `k` rows of 64 each, zero-padded. */
function packPanels(w: Float32Array, k: number, n: number): Float32Array {
  const panels = Math.ceil(n / PANEL);
  const packed = new Float32Array(panels * k * PANEL);
  for (let p = 0; p < panels; p++) {
    const cols = Math.min(PANEL, n - p * PANEL);
    for (let i = 0; i < k; i++) {
      packed.set(w.subarray(i * n + p * PANEL, i * n + p * PANEL + cols), (p * k + i) * PANEL);
    }
  }
  return packed;
}
