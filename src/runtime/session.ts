/**
 * Opening onnxruntime CPU sessions on in-process ONNX models, in memory or,
 * past `threshold` bytes of weights, through ONNX external data in a
 * temporary folder (protobuf caps a message at 2 GB).
 *
 * @module
 */

import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import * as ort from "onnxruntime-node";
import { writeModelWithExternalData } from "./external_data.ts";
import { initializerBytes, type ProgressFn } from "./onnx_graph.ts";

/** Initializers above this many bytes are written as external data by default. */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 1.5 * 2 ** 30;

/**
 * Session options shared by every encoder. `disablePrepacking` keeps
 * onnxruntime from repacking MatMul weights into a second, private copy: with
 * external data the weights then stay memory-mapped (peak ≈ one copy instead
 * of two, faster load), at about 2.4× the MatMul time (3584×131072, 8 tokens,
 * 2 cores: 465 ms vs 191 ms).
 *
 * @example
 * ```ts
 * const options = sessionOptions(2);
 * ```
 */
export function sessionOptions(
  intraOpThreads?: number,
  disablePrepacking = false,
): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
  };
  if (intraOpThreads !== undefined) options.intraOpNumThreads = intraOpThreads;
  if (disablePrepacking) options.extra = { session: { disable_prepacking: "1" } };
  return options;
}

/**
 * Open an onnxruntime session on `model`: from an in-memory protobuf when its
 * initializers fit under `threshold` bytes, else through external data in a
 * temporary folder that is removed once the session holds the weights.
 *
 * @example
 * ```ts
 * const session = await openSession(buildEncoderGraph(sae), sessionOptions(2));
 * ```
 */
export async function openSession(
  model: OnnxTypes.IModelProto,
  options: ort.InferenceSession.SessionOptions,
  threshold = DEFAULT_EXTERNAL_DATA_THRESHOLD,
  onProgress?: ProgressFn,
): Promise<ort.InferenceSession> {
  if (initializerBytes(model) <= threshold) {
    onProgress?.(0, 1, "serialize");
    const bytes = onnxProto.onnx.ModelProto.encode(model).finish();
    onProgress?.(1, 1, "serialize");
    onProgress?.(0, 1, "session");
    const session = await ort.InferenceSession.create(bytes, options);
    onProgress?.(1, 1, "session");
    return session;
  }
  const dir = await Deno.makeTempDir({ prefix: "latentwatch_onnx_" });
  try {
    const path = await writeModelWithExternalData(model, dir, onProgress);
    onProgress?.(0, 1, "session");
    const session = await ort.InferenceSession.create(path, options);
    onProgress?.(1, 1, "session");
    return session;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
