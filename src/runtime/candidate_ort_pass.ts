/**
 * The candidate encoder's first pass where onnxruntime computes the int8
 * product (no native kernels here): the graph runs whole, and for the SAEs
 * the WebAssembly SIMD scan prefilters, it writes the int32 accumulations
 * straight into the scan's leased region (`wasm_scan.ts`), so the scan
 * reads them without a copy. onnxruntime may decline a pre-allocated output
 * and return its own buffer; marks at both ends of the region tell which
 * happened.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import {
  ACC_OUTPUT,
  APPROX_OUTPUT,
  PREPARED_OUTPUT,
  SCALE_OUTPUT,
  TOKEN_OUTPUT,
} from "./candidate_graph.ts";

/** A value no int8 accumulation reaches (|acc| ≤ 127·255·d_in < 2³¹ for d_in < 66,000). */
const SENTINEL = -(2 ** 31);

/** Mark the first and last accumulation of a region before onnxruntime writes it. */
function markRegion(acc: Int32Array): void {
  acc[0] = SENTINEL;
  acc[acc.length - 1] = SENTINEL;
}

/**
 * Whether onnxruntime wrote its output into the pre-allocated `target` (it
 * returns a copy as `data`): both marks overwritten with `data`'s values.
 */
function writtenInto(data: Int32Array, target: Int32Array): boolean {
  const last = target.length - 1;
  return data.length === target.length && target[0] === data[0] && target[last] === data[last] &&
    target[0] !== SENTINEL && target[last] !== SENTINEL;
}

/** One batch for {@linkcode ortFirstPass}. */
export interface OrtFirstPassJob {
  /** The candidate graph's session (the product inside the graph). */
  session: ort.InferenceSession;
  feeds: Record<string, ort.Tensor>;
  tokens: number;
  dSae: number;
  /** The scan's region for this batch's `acc` (`tokens × dSae` int32s), or null for none. */
  region: { acc: Int32Array } | null;
}

/** What {@linkcode ortFirstPass} gave. */
export interface OrtFirstPass {
  out: ort.InferenceSession.OnnxValueMapType;
  /** Whether `acc` lies in the region (so the SIMD scan can prefilter it in place). */
  scanned: boolean;
}

/**
 * Run the int8 graph for one batch, its `acc` output into `job.region` when
 * there is one, and say whether onnxruntime wrote it there.
 *
 * @example
 * ```ts
 * declare const job: OrtFirstPassJob;
 * const { out, scanned } = await ortFirstPass(job);
 * out["token_bounds"].dims; // [tokens, 5]
 * scanned; // true when job.region holds the accumulations
 * ```
 */
export async function ortFirstPass(job: OrtFirstPassJob): Promise<OrtFirstPass> {
  const { session, feeds, tokens, dSae, region } = job;
  if (!region) return { out: await session.run(feeds), scanned: false };
  markRegion(region.acc);
  const out = await session.run(feeds, {
    [PREPARED_OUTPUT]: null,
    [ACC_OUTPUT]: new ort.Tensor("int32", region.acc, [tokens, dSae]),
    [SCALE_OUTPUT]: null,
    [TOKEN_OUTPUT]: null,
  });
  const scanned = !out[APPROX_OUTPUT] &&
    writtenInto(out[ACC_OUTPUT].data as Int32Array, region.acc);
  return { out, scanned };
}
