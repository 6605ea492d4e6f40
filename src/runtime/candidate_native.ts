/**
 * The candidate encoder's first pass on the native kernels
 * (`native_kernels.ts`): whether they run for an SAE (and why not), and one
 * batch through the graph's quantization, then the native int8 product
 * (TopK: its scores and cut too).
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import type { SaeWeights } from "../core/sae.ts";
import {
  ACC_OUTPUT,
  APPROX_OUTPUT,
  QUANTIZED_OUTPUT,
  SCALE_OUTPUT,
  TOKEN_OUTPUT,
  topkCutOf,
} from "./candidate_graph.ts";
import {
  nativeDInReason,
  type NativeDots,
  type NativeInt8Gemm,
  NativeKernelsUnavailableError,
  type NativeSelect,
  openNativeDots,
  openNativeInt8,
  openNativeSelect,
} from "./native_kernels.ts";
import { nativeKernelsReason, type NativeKernelsSetting } from "./native_library.ts";

/** The native kernels one candidate encoder runs: its product, the scan and the dots. */
export interface NativeKernelSet {
  gemm: NativeInt8Gemm;
  select: NativeSelect;
  dots: NativeDots;
}

/**
 * How to open the native kernels for `sae`, or null for onnxruntime's with
 * why (`auto` falls back quietly: the encoder's `int8Kernel` and
 * `int8KernelNote` say which ran and why; `require` throws).
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const { open, why } = await nativeProduct(sae, "auto");
 * open === null ? why : "native"; // open(wq): the product over Ŵ, the scan and the dots
 * ```
 */
export async function nativeProduct(
  sae: SaeWeights,
  kernel: NativeKernelsSetting,
): Promise<{ open: ((wq: Int8Array) => Promise<NativeKernelSet>) | null; why?: string }> {
  const tooWide = kernel === "off" ? undefined : nativeDInReason(sae.dIn);
  if (tooWide !== undefined) {
    if (kernel === "require") throw new NativeKernelsUnavailableError(tooWide);
    return { open: null, why: tooWide };
  }
  const why = await nativeKernelsReason(kernel);
  if (why !== undefined) return { open: null, why };
  // the library loaded (the reason above), so the scan and the dots open too
  const open = async (wq: Int8Array) => ({
    gemm: await openNativeInt8(wq, sae.dIn, sae.dSae),
    select: (await openNativeSelect())!,
    dots: (await openNativeDots())!,
  });
  return { open };
}

/** One batch for {@linkcode nativeFirstPass}. */
export interface NativeFirstPassJob {
  /** The candidate graph's session, built with `externalProduct`. */
  session: ort.InferenceSession;
  gemm: NativeInt8Gemm;
  feeds: Record<string, ort.Tensor>;
  tokens: number;
  /** Where the sums go (`tokens × dSae` int32s, reused across batches). */
  into: Int32Array;
  /** TopK's k; 0 for the other architectures. */
  topkK: number;
  columnScale: Float64Array;
  columnBias: Float32Array;
}

/**
 * The graph (quantize, bounds), then the native product; its outputs as the
 * graph with the product in it would give them (`acc`, or TopK's scores `a`
 * with the cut column set from each token's k-th score).
 *
 * @example
 * ```ts
 * declare const job: NativeFirstPassJob;
 * const out = await nativeFirstPass(job);
 * out["token_bounds"].dims; // [tokens, 5]
 * ```
 */
export async function nativeFirstPass(
  job: NativeFirstPassJob,
): Promise<ort.InferenceSession.OnnxValueMapType> {
  const { gemm, tokens } = job;
  const dSae = gemm.dSae;
  const graphOut = await job.session.run(job.feeds);
  const acc = job.into;
  await gemm.run(graphOut[QUANTIZED_OUTPUT].data as Uint8Array, tokens, acc);
  if (job.topkK === 0) {
    return { ...graphOut, [ACC_OUTPUT]: new ort.Tensor("int32", acc, [tokens, dSae]) };
  }
  const kth = await gemm.topkScores(acc, tokens, {
    columnScale: job.columnScale,
    columnBias: job.columnBias,
    tokenScale: graphOut[SCALE_OUTPUT].data as Float32Array,
    k: job.topkK,
  });
  // the graph left −bound in the cut column: TopK's cut needs the k-th score
  const tb = graphOut[TOKEN_OUTPUT].data as Float32Array;
  for (let t = 0; t < tokens; t++) tb[5 * t + 4] = topkCutOf(kth[t], tb[5 * t + 3]);
  const scores = new Float32Array(acc.buffer, acc.byteOffset, tokens * dSae);
  return { ...graphOut, [APPROX_OUTPUT]: new ort.Tensor("float32", scores, [tokens, dSae]) };
}
