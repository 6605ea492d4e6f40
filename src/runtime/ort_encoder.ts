/**
 * The production encoder: the SAE's ONNX graph ({@linkcode buildEncoderGraph})
 * run by onnxruntime on the CPU (or a GPU execution provider, `provider`), with the dense output turned into sparse
 * per-token latents by a tight scan into reused scratch buffers
 * ({@linkcode SparseRowsReader}, sparse_rows.ts).
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
import { assertEncodable, canonicalWatch, checkEncodeInput } from "../core/encoder_checks.ts";
import type { Encoder, SaeWeights, SparseLatents } from "../core/sae.ts";
import { LatentRows, NO_ROWS } from "../core/latent_rows.ts";
import { SparseRowsReader } from "./sparse_rows.ts";
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
  /** The outputs read into sparse rows, through scratch reused across batches. */
  readonly #rows: SparseRowsReader;
  /** Watched dense graphs: output column → SAE latent index. */
  readonly #columns: Uint32Array | null;
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
    this.#columns = watch && watchIsCheap(sae) ? watch : null;
    let mask: Uint8Array | null = null;
    if (watch && this.#topk) {
      mask = new Uint8Array(sae.dSae);
      for (const i of watch) mask[i] = 1;
    }
    this.#rows = new SparseRowsReader({
      dSae: sae.dSae,
      columns: this.#columns,
      mask,
      topk: this.#topk,
    });
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
      return this.#rows.fromDense(small.encode(x, tokens), tokens);
    }
    return this.#encodeOrt(x, tokens);
  }

  async #encodeOrt(x: Float32Array, tokens: number): Promise<LatentRows> {
    const feeds = encoderFeeds(x, tokens, this.dIn);
    if (!feeds) return NO_ROWS;
    const out = await this.#session.run(feeds);
    return this.#topk
      ? this.#rows.fromTopK(
        out[TOPK_VALUES].data as Float32Array,
        out[TOPK_INDICES].data as BigInt64Array,
        tokens,
      )
      : this.#rows.fromDense(out[DENSE_OUTPUT].data as Float32Array, tokens);
  }

  async close(): Promise<void> {
    await this.#session.release();
  }
}
