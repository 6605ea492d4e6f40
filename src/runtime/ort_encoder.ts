/**
 * The production encoder: the SAE's ONNX graph ({@linkcode buildEncoderGraph})
 * run by onnxruntime on the CPU (or a GPU execution provider, `provider`), with the dense output turned into sparse
 * per-token latents by a tight scan into reused scratch buffers.
 *
 * Watched latents (`watch`): standard, JumpReLU and gated SAEs get a graph
 * with only the watched encoder columns, exact for those latents and
 * |watch|/dSae of the work. TopK SAEs still run the full MatMul and TopK
 * (membership in the top k depends on every latent) and only the reporting
 * is restricted, so it is exact but no cheaper: check
 * {@linkcode watchIsCheap} before relying on the saving.
 *
 * Large SAEs: when the initializers exceed `externalDataThreshold` (1.5 GiB
 * by default; protobuf caps a model at 2 GB) the weights are written as ONNX
 * external data into a temporary folder, the session is created from that
 * path, and the folder is deleted right after.
 *
 * @module
 */

import * as ort from "onnxruntime-node";
import { assertEncodable, canonicalWatch, checkEncodeInput } from "../core/reference_encoder.ts";
import type { Encoder, SaeWeights, SparseLatents } from "../core/sae.ts";
import { LatentRows, NO_ROWS } from "../core/latent_rows.ts";
import {
  buildEncoderGraph,
  DENSE_OUTPUT,
  TOPK_INDICES,
  TOPK_VALUES,
  watchIsCheap,
} from "./onnx_graph.ts";
import type { ProgressFn } from "./matrix.ts";
import { encoderFeeds, openProviderSession, type ProviderSession } from "./session.ts";
import {
  type ExecutionProvider,
  type ExecutionProviderSetting,
  GPU_PROVIDERS,
  parseProviderSetting,
  providerAvailability,
  type ProviderReport,
} from "./provider.ts";
import { createCandidateEncoder } from "./candidate_encoder.ts";
import type { NativeKernelsSetting } from "./native_library.ts";
import { WatchedDots } from "./watched_dots.ts";
import { cudaEncoderTakes, type CudaFailure, tryCudaEncoder, withCudaNote } from "./cuda_choice.ts";

export { watchIsCheap } from "./onnx_graph.ts";
export { createProbeEncoder } from "./probe_encoder.ts";
export type { ExecutionProvider, ExecutionProviderSetting, ProviderReport } from "./provider.ts";

/** An encoder that says which execution provider runs it. */
export type ProviderEncoder = Encoder & ProviderReport;

/**
 * The provider report of an encoder made by {@linkcode createOrtEncoder} or
 * `createProbeEncoder`; undefined for other encoders (test doubles, the
 * reference encoder).
 *
 * @example
 * ```ts
 * import type { Encoder } from "../core/sae.ts";
 * declare const encoder: Encoder;
 * const where = encoderProvider(encoder)?.provider; // "cpu"
 * ```
 */
export function encoderProvider(encoder: Encoder): ProviderReport | undefined {
  const p = (encoder as Partial<ProviderReport>).provider;
  return p === "cpu" || p === "webgpu" || p === "cuda" ? encoder as ProviderEncoder : undefined;
}

/** Options for {@linkcode createOrtEncoder}. */
export interface OrtEncoderOptions {
  /** onnxruntime intra-op threads (default: one per logical core). */
  intraOpThreads?: number;
  /**
   * Report only these latents (still by their SAE index). Exact for every
   * architecture; cheaper only where {@linkcode watchIsCheap} is true.
   */
  watch?: Uint32Array;
  /** Called while the graph is built, serialised or written, and the session opened. */
  onProgress?: ProgressFn;
  /** Bytes of initializers above which external data is used (default 1.5 GiB). */
  externalDataThreshold?: number;
  /** Trade MatMul speed for memory on very large SAEs (see `sessionOptions`). */
  disablePrepacking?: boolean;
  /**
   * Let idle onnxruntime threads spin-wait (default true, but off on the int8-candidates path,
   * whose sessions share their cores with the int8 product; `serve` turns it off everywhere).
   */
  spinning?: boolean;
  /**
   * Execution provider setting (`provider.ts`): `cpu` (the default here),
   * `auto`, `webgpu` or `cuda`; a GPU provider that cannot start falls back
   * to the CPU, and the encoder's `provider` / `providerNote` say so.
   */
  provider?: ExecutionProviderSetting;
  /**
   * How a full encode (no watch, or TopK) runs on the CPU: `f32` (one f32
   * graph, the default here), `int8-candidates` (an int8 pass bounds every
   * latent, the candidates are recomputed exactly in f32:
   * `candidate_encoder.ts`; same results), or `auto` (`int8-candidates` for
   * SAEs of at least 2²⁰ encoder weights when no GPU provider runs it).
   */
  fullEncode?: FullEncodePath;
  /**
   * The native CPU kernels (default `auto`): the candidate encoder's
   * (`candidate_encoder.ts`) and the watched encoder's product
   * (`watched_dots.ts`).
   */
  nativeKernels?: NativeKernelsSetting;
  /**
   * Watched standard, JumpReLU and gated encoders: compute batches on the
   * calling thread instead of onnxruntime (`watched_dots.ts`; same results
   * up to f32 rounding): on the native product (`nativeKernels` permitting)
   * up to `NATIVE_SYNC_MAX_MACS` multiply-adds, else batches of a few tokens
   * (up to `SYNC_MAX_MACS`) in WebAssembly SIMD. Default true on the CPU;
   * false keeps every batch on onnxruntime (bit for bit the full graph's
   * values).
   */
  smallBatchDots?: boolean;
  /**
   * With `provider` `auto` or `cuda`, open latentwatch's CUDA encoder first
   * for a full encode of a standard or JumpReLU SAE (`cuda_choice.ts`;
   * default true).
   */
  cudaEncoder?: boolean;
}

/** See {@linkcode OrtEncoderOptions.fullEncode}. */
export type FullEncodePath = "auto" | "f32" | "int8-candidates";

/** The full-encode paths, for configuration checks. */
export const FULL_ENCODE_PATHS = ["auto", "f32", "int8-candidates"] as const;

/** Whether `sae` is encoded by the candidate encoder under `opts`. */
async function candidatePath(sae: SaeWeights, opts: OrtEncoderOptions): Promise<boolean> {
  const setting = opts.fullEncode ?? "f32";
  if (setting === "f32") return false;
  if (opts.watch && watchIsCheap(sae)) return false; // a watched graph does less work still
  const provider = parseProviderSetting(opts.provider ?? "cpu");
  if (provider === "webgpu" || provider === "cuda") return false;
  if (provider === "auto") {
    for (const gpu of GPU_PROVIDERS) if ((await providerAvailability(gpu)).available) return false;
  }
  return setting === "int8-candidates" || sae.dIn * sae.dSae >= 2 ** 20;
}

/**
 * The options of the exact f32 encoder that an int8-candidates encoder falls
 * back to and times its path against: the caller's, on the CPU (the CUDA
 * encoder was tried before the candidate path: its fallback tokens stay
 * where this encoder runs), with idle onnxruntime threads not spinning
 * unless asked, as the candidate encoder's own session. Spinning, they kept
 * the second core busy for some 30 ms after each f32 encode, and the int8
 * path that ran next took 9–17 ms for a batch of 16 tokens it computes in
 * 2.4 (docs/performance-history.md, thirtieth sitting).
 *
 * @example
 * ```ts
 * fallbackEncoderOptions({ fullEncode: "auto", intraOpThreads: 2 });
 * // { fullEncode: "f32", intraOpThreads: 2, cudaEncoder: false, spinning: false }
 * ```
 */
export function fallbackEncoderOptions(opts: OrtEncoderOptions): OrtEncoderOptions {
  return { ...opts, fullEncode: "f32", cudaEncoder: false, spinning: opts.spinning ?? false };
}

/**
 * Build the encoder graph of `sae` and open an onnxruntime session on it, on
 * the CPU unless `opts.provider` asks for another provider.
 *
 * @throws {EncoderConfigError} for an SAE the encoder cannot run (see `assertEncodable`)
 * @throws {EncoderInputError} for a watched latent ≥ dSae
 * @throws {TypeError | RangeError} for an unknown provider name
 *
 * @example
 * ```ts
 * import { loadSaeLens } from "../formats/saelens.ts";
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights, x: Float32Array, tokens: number;
 * const enc = await createOrtEncoder(await loadSaeLens("my-sae"), { intraOpThreads: 4 });
 * const latents = await enc.encode(x, tokens); // one SparseLatents per token
 * await enc.close();
 * const watched = await createOrtEncoder(sae, { watch: new Uint32Array([12, 4096]) });
 * const gpu = await createOrtEncoder(sae, { provider: "auto" });
 * gpu.provider; // "webgpu", "cuda" or "cpu"
 * const fast = await createOrtEncoder(sae, { fullEncode: "auto" });
 * (fast as { path?: string }).path; // "int8-candidates" for a large SAE on the CPU
 * ```
 */
export async function createOrtEncoder(
  sae: SaeWeights,
  opts: OrtEncoderOptions = {},
): Promise<ProviderEncoder> {
  const setting = parseProviderSetting(opts.provider ?? "cpu");
  let cudaFailed: CudaFailure | undefined;
  if ((opts.cudaEncoder ?? true) && cudaEncoderTakes(sae, setting, opts.watch)) {
    assertEncodable(sae); // what the graph checks on the other paths, before any upload
    const tried = tryCudaEncoder(sae);
    if ("encoder" in tried) return tried.encoder;
    cudaFailed = tried;
  }
  if (await candidatePath(sae, opts)) {
    return await createCandidateEncoder(sae, {
      intraOpThreads: opts.intraOpThreads,
      spinning: opts.spinning,
      watch: opts.watch,
      nativeKernels: opts.nativeKernels,
      fullEncoder: () => createOrtEncoder(sae, fallbackEncoderOptions(opts)),
    });
  }
  const model = buildEncoderGraph(sae, { watch: opts.watch, onProgress: opts.onProgress });
  const opened = await openProviderSession(model, {
    provider: setting,
    intraOpThreads: opts.intraOpThreads,
    disablePrepacking: opts.disablePrepacking,
    spinning: opts.spinning,
    threshold: opts.externalDataThreshold,
    onProgress: opts.onProgress,
  });
  const where = cudaFailed === undefined ? opened : withCudaNote(opened, setting, cudaFailed);
  const encoder = new OrtEncoder(where, sae, opts.watch && canonicalWatch(opts.watch, sae.dSae));
  if ((opts.smallBatchDots ?? true) && where.provider === "cpu") {
    try {
      await encoder.useSmallBatchDots(sae, opts.nativeKernels ?? "auto");
    } catch (err) {
      await encoder.close(); // `require` without the native kernels: nothing may leak
      throw err;
    }
  }
  return encoder;
}

class OrtEncoder implements ProviderEncoder {
  /** Which encode path runs (the bench reports it). */
  readonly path = "f32";
  readonly dIn: number;
  readonly dSae: number;
  readonly provider: ExecutionProvider;
  readonly providerNote?: string;
  readonly providerFallback: boolean;
  readonly #session: ort.InferenceSession;
  readonly #topk: boolean;
  // Scratch grown geometrically and reused across batches; results are
  // copied out of it, so a later batch never aliases an earlier one.
  #idx = new Uint32Array(0);
  #val = new Float32Array(0);
  /** TopK only: latent index → value of the row being sorted. */
  #lookup: Float32Array;
  /** Columns of the dense output: `dSae`, or `|watch|` for a watched graph. */
  readonly #width: number;
  /** Watched dense graphs: output column → SAE latent index. */
  readonly #columns: Uint32Array | null;
  /** Watched TopK: 1 for a watched latent (the graph is full; reporting is filtered). */
  readonly #mask: Uint8Array | null;
  /** Watched dense graphs: small batches computed synchronously (`watched_dots.ts`). */
  #small: WatchedDots | null = null;
  #smallNote: string | undefined;
  /** Batches the small-batch path computed. */
  smallBatches = 0;

  constructor(opened: ProviderSession, sae: SaeWeights, watch?: Uint32Array) {
    this.#session = opened.session;
    this.provider = opened.provider;
    if (opened.providerNote !== undefined) this.providerNote = opened.providerNote;
    this.providerFallback = opened.providerFallback;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
    this.#topk = sae.architecture === "topk";
    this.#lookup = new Float32Array(this.#topk ? sae.dSae : 0);
    this.#columns = watch && watchIsCheap(sae) ? watch : null;
    this.#width = this.#columns ? this.#columns.length : sae.dSae;
    this.#mask = null;
    if (watch && this.#topk) {
      this.#mask = new Uint8Array(sae.dSae);
      for (const i of watch) this.#mask[i] = 1;
    }
  }

  /**
   * Compute watched batches with {@linkcode WatchedDots} where it applies: on
   * the native product as `kernels` allows, else small ones in WebAssembly.
   */
  async useSmallBatchDots(sae: SaeWeights, kernels: NativeKernelsSetting): Promise<void> {
    if (!this.#columns) return;
    const { dots, note } = await WatchedDots.open(sae, this.#columns, kernels);
    this.#small = dots;
    this.#smallNote = note; // open gives a note only where the native product does not run
  }

  /** Which kernel computes watched batches here: absent where onnxruntime computes them all. */
  get watchedKernel(): "native-fma" | "wasm" | undefined {
    return this.#small?.kernel;
  }

  /** Why the native product does not compute watched batches, when it could apply. */
  get watchedKernelNote(): string | undefined {
    return this.#small ? this.#smallNote : undefined;
  }

  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    return this.encodeRows(x, tokens).then((rows) => rows.toArray());
  }

  encodeRows(x: Float32Array, tokens: number): Promise<LatentRows> {
    try {
      const rows = this.#rowsOf(x, tokens);
      return rows instanceof LatentRows ? Promise.resolve(rows) : rows;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Small watched batches at once, the rest through onnxruntime. */
  #rowsOf(x: Float32Array, tokens: number): LatentRows | Promise<LatentRows> {
    const small = this.#small;
    if (small && tokens > 0 && small.fits(tokens)) {
      checkEncodeInput(x, tokens, this.dIn);
      this.smallBatches++;
      return this.#sparseFromDense(small.encode(x, tokens), tokens);
    }
    return this.#encodeOrt(x, tokens);
  }

  async #encodeOrt(x: Float32Array, tokens: number): Promise<LatentRows> {
    const feeds = encoderFeeds(x, tokens, this.dIn);
    if (!feeds) return NO_ROWS;
    const out = await this.#session.run(feeds);
    return this.#topk
      ? this.#sparseFromTopK(
        out[TOPK_VALUES].data as Float32Array,
        out[TOPK_INDICES].data as BigInt64Array,
        tokens,
      )
      : this.#sparseFromDense(out[DENSE_OUTPUT].data as Float32Array, tokens);
  }

  #reserve(capacity: number): void {
    if (this.#idx.length >= capacity) return;
    const size = Math.max(capacity, this.#idx.length * 2);
    const idx = new Uint32Array(size);
    const val = new Float32Array(size);
    idx.set(this.#idx);
    val.set(this.#val);
    this.#idx = idx;
    this.#val = val;
  }

  #sparseFromDense(dense: Float32Array, tokens: number): LatentRows {
    const dSae = this.#width;
    // Trained SAEs fire well under 1% of latents, so skip 8 zeros at a time:
    // OR the bit patterns, dropping the sign so -0 counts as zero, as in `v !== 0`.
    const bits = new Int32Array(dense.buffer, dense.byteOffset, dense.length);
    const ends = new Uint32Array(tokens);
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      // Reserving a whole row up front keeps the inner loops free of checks.
      this.#reserve(pos + dSae);
      const idx = this.#idx;
      const val = this.#val;
      const base = t * dSae;
      const end = base + dSae;
      const end8 = base + (dSae & ~7);
      let b = base;
      for (; b < end8; b += 8) {
        const any = bits[b] | bits[b + 1] | bits[b + 2] | bits[b + 3] | bits[b + 4] | bits[b + 5] |
          bits[b + 6] | bits[b + 7];
        if (any << 1 === 0) continue;
        for (let j = b; j < b + 8; j++) {
          const v = dense[j];
          if (v !== 0) {
            idx[pos] = j - base;
            val[pos] = v;
            pos++;
          }
        }
      }
      for (; b < end; b++) {
        const v = dense[b];
        if (v !== 0) {
          idx[pos] = b - base;
          val[pos] = v;
          pos++;
        }
      }
      ends[t] = pos;
    }
    // Watched graphs: output columns are the watched latents in ascending order,
    // so mapping them back keeps each row sorted.
    const columns = this.#columns;
    if (columns) { for (let p = 0; p < pos; p++) this.#idx[p] = columns[this.#idx[p]]; }
    return this.#split(ends, pos);
  }

  #sparseFromTopK(values: Float32Array, indices: BigInt64Array, tokens: number): LatentRows {
    const k = values.length / tokens;
    // Indices are < 2^32 and little-endian: read the low word, no BigInt boxing.
    const words = new Uint32Array(indices.buffer, indices.byteOffset, indices.length * 2);
    const lookup = this.#lookup;
    const mask = this.#mask;
    this.#reserve(tokens * k);
    const idx = this.#idx;
    const val = this.#val;
    const ends = new Uint32Array(tokens);
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      const start = pos;
      for (let p = t * k, end = p + k; p < end; p++) {
        const v = values[p];
        if (v !== 0) {
          const i = words[2 * p];
          if (mask && !mask[i]) continue;
          idx[pos++] = i;
          lookup[i] = v;
        }
      }
      idx.subarray(start, pos).sort();
      for (let p = start; p < pos; p++) val[p] = lookup[idx[p]];
      ends[t] = pos;
    }
    return this.#split(ends, pos);
  }

  /** Copy `total` scratch entries out once, as one structure for the batch. */
  #split(ends: Uint32Array, total: number): LatentRows {
    return new LatentRows(this.#idx.slice(0, total), this.#val.slice(0, total), ends);
  }

  async close(): Promise<void> {
    await this.#session.release();
  }
}
