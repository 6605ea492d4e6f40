/**
 * Watched encodes without onnxruntime, synchronously on the calling thread:
 * the watched columns' product in native code where the native kernels
 * load (`native_sgemm.ts`, AVX-512 FMA), else every (token, watched latent)
 * dot in WebAssembly f32 SIMD ({@linkcode WasmDots}) for a few tokens.
 *
 * Why: a gated decode step is one token. Through onnxruntime its watched
 * encode costs a `setImmediate` turn (onnxruntime-node defers `run` to one,
 * so every other due I/O callback runs first), tensor set-up and five graph
 * nodes: about 90 µs in the sidecar for 64 latents at d_in 768, against
 * about 6 µs in WebAssembly. For batches past {@linkcode SYNC_MAX_MACS} the
 * onnxruntime GEMM is faster than WebAssembly, and the encoder uses it. The
 * native product is faster than onnxruntime for small batches (64 latents ×
 * 768, 16 tokens: 9.5 against 34–46 µs) and kept up to
 * {@linkcode NATIVE_SYNC_MAX_MACS} for `serve`'s tail, though onnxruntime's
 * two-core GEMM wins past about 2²² in a process alone (docs/performance.md).
 *
 * The arithmetic follows the encoder graph (`onnx_graph.ts`) in f32: input
 * normalisation, `− b_dec`, the product, the bias and the activation. Only
 * the order of the sums differs from onnxruntime's (rounding, at most
 * d·2⁻²⁴·Σ|x_i·w_i| per dot), as for the candidate encoder's second pass.
 *
 * @module
 */
import { alignedArray } from "./aligned.ts";
import { LAYER_NORM_EPS } from "../core/reference_encoder.ts";
import type { SaeWeights } from "../core/sae.ts";
import { nativeKernelsReason, type NativeKernelsSetting } from "./native_library.ts";
import { type NativeSgemm, openNativeSgemm, type SgemmActivation } from "./native_sgemm.ts";
import { WasmDots } from "./wasm_dots.ts";
import { encoderColumns, transpose } from "./matrix.ts";

/**
 * Multiply-adds (tokens × watched latents × d_in) up to which a watched batch
 * is computed here rather than by onnxruntime: about 60 µs of this thread at
 * most (measured crossover of a synchronous loop: about 4 tokens of 64
 * latents at d_in 768; the `setImmediate` turn onnxruntime adds moves it
 * further).
 */
export const SYNC_MAX_MACS = 1 << 19;

/**
 * The same limit with the native product: about 0.5 ms of this thread at the
 * 260 GFLOP/s it measured on one core here. In a process with the machine to
 * itself onnxruntime's GEMM on both cores is faster from about 2²² (64
 * latents × 768: 128 tokens in 60 µs against 78 µs here), but in `serve` the
 * other core is busy with the broker and the model, and a batch past 2²²
 * is the catch-up after a stall, exactly where the tail is: with the limit
 * at 2²² the in-sidecar p99 at half load measured 6.4–7.5 ms, at 2²⁶ 1.9–2.8
 * ms (docs/performance-history.md, twelfth sitting).
 */
export const NATIVE_SYNC_MAX_MACS = 1 << 26;

/**
 * Watched weights (latents × d_in) up to which the native product keeps its
 * own packed copy of them (16 MiB; 64 latents × 768 is 49,152): a wider
 * watch stays on onnxruntime and the WebAssembly dots, not twice in memory.
 */
export const NATIVE_MAX_WATCHED_WEIGHTS = 1 << 22;

const f32 = Math.fround;

/**
 * The dense activations of a standard, JumpReLU or gated SAE's watched
 * latents, computed synchronously on the native product
 * ({@linkcode WatchedDots.open}) or, for a few tokens, in WebAssembly SIMD.
 *
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * const sae = randomSae({ architecture: "jumprelu", dIn: 8, dSae: 32, seed: 1 });
 * const dots = WatchedDots.create(sae, new Uint32Array([3, 17]));
 * const dense = dots!.encode(new Float32Array(8), 1); // [1, 2]: latents 3 and 17
 * ```
 */
export class WatchedDots {
  readonly #sae: SaeWeights;
  readonly #columns: Uint32Array;
  /** One of the two: the WebAssembly dots, or the native product. */
  readonly #dots: WasmDots | null;
  readonly #native: NativeSgemm | null;
  /** Native: the batch's normalised inputs, and its products. */
  #inputs = new Float32Array(0);
  /** `b_dec` where the graph subtracts it from the input, else null. */
  readonly #bDec: Float32Array | null;
  /** No input normalisation: the native kernel reads the tokens as they came. */
  readonly #rawInput: boolean;
  #products = new Float32Array(0);
  /** Per watched column: the bias before the activation (`b_enc`, or `b_gate` for gated). */
  readonly #bias: Float32Array;
  /** JumpReLU: max(θ, 0) as f32; gated: exp(r_mag) as f32. */
  readonly #level: Float32Array | null;
  readonly #bMag: Float32Array | null;
  #dense = new Float32Array(0);
  /**
   * What the native product is run with, settled at construction: `b_dec`
   * subtracted in the kernel when the tokens need no normalisation, and for
   * JumpReLU and standard SAEs the bias and activation applied there too.
   */
  readonly #runWith: { sub?: Float32Array; activation?: SgemmActivation } = {};

  /**
   * A `WatchedDots` in WebAssembly for `columns` (ascending SAE indices), or
   * null where it does not apply: TopK (membership depends on every latent),
   * or a watch so wide that even one token is past {@linkcode SYNC_MAX_MACS}.
   */
  static create(sae: SaeWeights, columns: Uint32Array): WatchedDots | null {
    if (!applies(sae, columns) || columns.length * sae.dIn > SYNC_MAX_MACS) return null;
    return new WatchedDots(sae, columns, null);
  }

  /**
   * A `WatchedDots` on the native product where `kernels` allows and the
   * native kernels load, else as {@linkcode create}; with `require`, where
   * they cannot load, a {@linkcode NativeKernelsUnavailableError} saying
   * why. A watch past {@linkcode NATIVE_MAX_WATCHED_WEIGHTS} stays off the
   * native product whatever the setting (a choice of memory, not of what
   * can run). `note` says why the native product does not run, when it
   * does not.
   *
   * @example
   * ```ts
   * import { randomSae } from "../formats/random_sae.ts";
   * const sae = randomSae({ architecture: "jumprelu", dIn: 8, dSae: 32, seed: 1 });
   * const { dots, note } = await WatchedDots.open(sae, new Uint32Array([3, 17]), "auto");
   * dots?.kernel; // "native-fma", or "wasm" with `note` saying why
   * ```
   */
  static async open(
    sae: SaeWeights,
    columns: Uint32Array,
    kernels: NativeKernelsSetting,
  ): Promise<{ dots: WatchedDots | null; note?: string }> {
    if (!applies(sae, columns)) return { dots: null };
    const note = await nativeNote(sae, columns, kernels);
    if (note === undefined) {
      const native = await openNativeSgemm(encoderColumns(sae, columns), sae.dIn, columns.length);
      if (native) return { dots: new WatchedDots(sae, columns, native) };
    }
    return { dots: WatchedDots.create(sae, columns), note };
  }

  private constructor(sae: SaeWeights, columns: Uint32Array, native: NativeSgemm | null) {
    this.#sae = sae;
    this.#columns = columns;
    this.#native = native;
    this.#bDec = sae.applyBDecToInput && (sae.kind ?? "sae") === "sae" ? sae.bDec : null;
    this.#rawInput = (sae.normalize ?? "none") === "none";
    const { dIn } = sae;
    const w = columns.length;
    if (native) {
      this.#dots = null;
    } else {
      // the kernel wants each watched latent's column of W_enc as a row
      this.#dots = new WasmDots(transpose(encoderColumns(sae, columns), dIn, w), w, dIn);
    }
    const pick = (v: Float32Array, map: (x: number) => number = (x) => x) =>
      Float32Array.from(columns, (j) => map(v[j]));
    const gated = sae.architecture === "gated";
    this.#bias = pick(gated ? sae.gated!.bGate : sae.bEnc);
    this.#level = sae.architecture === "jumprelu"
      ? pick(sae.threshold!, (t) => Math.max(t, 0))
      : gated
      ? pick(sae.gated!.rMag, Math.exp)
      : null;
    this.#bMag = gated ? pick(sae.gated!.bMag) : null;
    if (native && this.#rawInput && this.#bDec) this.#runWith.sub = this.#bDec;
    if (native && !gated) {
      this.#runWith.activation = sae.architecture === "jumprelu"
        ? { kind: "jumprelu", bias: this.#bias, level: this.#level! }
        : { kind: "relu", bias: this.#bias };
    }
  }

  /** Which kernel computes the products. */
  get kernel(): "native-fma" | "wasm" {
    return this.#native ? "native-fma" : "wasm";
  }

  /** Whether a batch of `tokens` is computed here (see {@linkcode SYNC_MAX_MACS}). */
  fits(tokens: number): boolean {
    const limit = this.#native ? NATIVE_SYNC_MAX_MACS : SYNC_MAX_MACS;
    return tokens * this.#columns.length * this.#sae.dIn <= limit;
  }

  /**
   * The watched latents' activations of `tokens` raw tokens (`x` is
   * `[tokens, dIn]`): `[tokens, |watch|]`, row-major, in watch order. The
   * array is reused by the next call.
   */
  encode(x: Float32Array, tokens: number): Float32Array {
    const { dIn } = this.#sae;
    const w = this.#columns.length;
    const native = this.#native;
    if (native) {
      // JumpReLU and ReLU end in the kernel (the same f32 steps as #activate); gated here
      const fused = this.#runWith.activation !== undefined;
      // the kernel's 512-bit stores land on cache lines
      if (fused && this.#dense.length < tokens * w) {
        this.#dense = alignedArray(Float32Array, tokens * w);
      }
      if (!fused && this.#products.length < tokens * w) {
        this.#products = alignedArray(Float32Array, tokens * w);
      }
      const out = fused ? this.#dense : this.#products;
      if (this.#rawInput) {
        // the kernel subtracts b_dec itself (the same f32 rounding): no pass over x here
        native.run(x, tokens, out, this.#runWith);
      } else {
        if (this.#inputs.length < tokens * dIn) this.#inputs = new Float32Array(tokens * dIn);
        for (let t = 0; t < tokens; t++) {
          this.#input(x.subarray(t * dIn, (t + 1) * dIn), this.#inputs, t * dIn);
        }
        native.run(this.#inputs, tokens, out, this.#runWith);
      }
      return fused ? out.subarray(0, tokens * w) : this.#activate(out, tokens * w);
    }
    const dots = this.#dots!;
    const s = dots.prepare(tokens, tokens * w);
    for (let t = 0; t < tokens; t++) {
      this.#input(x.subarray(t * dIn, (t + 1) * dIn), s.inputs, t * dots.stride);
    }
    let c = 0;
    for (let t = 0; t < tokens; t++) {
      const input = dots.inputAddress(t);
      for (let j = 0; j < w; j++, c++) {
        s.pairs[2 * c] = input;
        s.pairs[2 * c + 1] = dots.rowAddress(j);
      }
    }
    dots.runHere(c);
    return this.#activate(s.results, tokens * w);
  }

  /** Normalise one token and subtract `b_dec` as the graph does, in f32, into `out` at `at`. */
  #input(x: Float32Array, out: Float32Array, at: number): void {
    const sae = this.#sae;
    const d = sae.dIn;
    let shift = 0, mul = 1, divide = 1;
    switch (sae.normalize ?? "none") {
      case "none":
        break;
      case "constant_norm_rescale": {
        let sq = 0;
        for (let i = 0; i < d; i++) sq += x[i] * x[i];
        const norm = f32(Math.sqrt(f32(sq)));
        // a zero vector encodes as 0 (the graph's Where), not 0·∞
        mul = norm > 0 ? f32(f32(Math.sqrt(d)) / norm) : 0;
        break;
      }
      case "layer_norm": {
        let sum = 0;
        for (let i = 0; i < d; i++) sum += x[i];
        shift = f32(sum / d);
        let ss = 0;
        for (let i = 0; i < d; i++) ss += f32(x[i] - shift) ** 2;
        divide = f32(f32(Math.sqrt(f32(f32(ss) / (d - 1)))) + f32(LAYER_NORM_EPS));
        break;
      }
    }
    const bDec = this.#bDec;
    for (let i = 0; i < d; i++) {
      let v = shift === 0 ? x[i] : f32(x[i] - shift);
      if (mul !== 1) v = f32(v * mul);
      if (divide !== 1) v = f32(v / divide);
      out[at + i] = bDec ? f32(v - bDec[i]) : v;
    }
  }

  /** The activation of every (token, watched latent) dot, as the graph's last nodes. */
  #activate(products: Float32Array, n: number): Float32Array {
    if (this.#dense.length < n) this.#dense = new Float32Array(n);
    const dense = this.#dense;
    const w = this.#columns.length;
    const bias = this.#bias, level = this.#level, bMag = this.#bMag;
    const arch = this.#sae.architecture;
    for (let c = 0; c < n; c++) {
      const j = c % w;
      const dot = products[c];
      const h = f32(dot + bias[j]);
      if (arch === "jumprelu") dense[c] = h > level![j] ? h : 0;
      else if (arch === "standard") dense[c] = h > 0 ? h : 0;
      else dense[c] = h > 0 ? Math.max(0, f32(f32(dot * level![j]) + bMag![j])) : 0; // gated
    }
    return dense.subarray(0, n);
  }
}

/** Whether a watched encode of `columns` can run here at all (not TopK, not empty). */
function applies(sae: SaeWeights, columns: Uint32Array): boolean {
  return sae.architecture !== "topk" && columns.length > 0;
}

/** Why the native product is not used for this watch (undefined: it is); throws under `require`. */
async function nativeNote(
  sae: SaeWeights,
  columns: Uint32Array,
  kernels: NativeKernelsSetting,
): Promise<string | undefined> {
  const why = await nativeKernelsReason(kernels);
  if (why !== undefined) return why;
  const weights = columns.length * sae.dIn;
  if (weights > NATIVE_MAX_WATCHED_WEIGHTS) {
    return `${columns.length} watched latents × d_in ${sae.dIn} = ${weights} weights is past ` +
      `NATIVE_MAX_WATCHED_WEIGHTS (${NATIVE_MAX_WATCHED_WEIGHTS})`;
  }
  return undefined;
}
