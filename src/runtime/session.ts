/**
 * Opening onnxruntime sessions on in-process ONNX models, in memory or,
 * past `threshold` bytes of weights, through ONNX external data in a
 * temporary folder (protobuf caps a message at 2 GB), on the CPU or on the
 * execution provider a setting picks ({@linkcode openProviderSession},
 * `provider.ts`).
 *
 * @module
 */

import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import * as ort from "onnxruntime-node";
import { writeModelWithExternalData } from "./external_data.ts";
import { checkEncodeInput } from "../core/encoder_checks.ts";
import { initializerBytes, INPUT_NAME } from "./onnx_graph.ts";
import type { ProgressFn } from "./matrix.ts";
import {
  type ExecutionProvider,
  type ExecutionProviderSetting,
  onProvider,
  parseProviderSetting,
  type ProviderReport,
} from "./provider.ts";

/** Initializers above this many bytes are written as external data by default. */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 1.5 * 2 ** 30;

/**
 * Session options shared by every encoder. `disablePrepacking` keeps
 * onnxruntime from repacking MatMul weights into a second, private copy: with
 * external data the weights then stay memory-mapped (peak ≈ one copy instead
 * of two, faster load), at about 2.4× the MatMul time (3584×131072, 8 tokens,
 * 2 cores: 465 ms vs 191 ms). `provider` is the one execution provider
 * registered (onnxruntime runs nodes a GPU provider lacks on the CPU).
 *
 * @example
 * ```ts
 * const options = sessionOptions(2);
 * const gpu = sessionOptions(undefined, false, "webgpu");
 * ```
 */
export function sessionOptions(
  intraOpThreads?: number,
  disablePrepacking = false,
  provider: ExecutionProvider = "cpu",
  spinning = true,
): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
  };
  // onnxruntime's own default (its count of physical cores) ran on one of this machine's two
  // cores, at half the speed: one thread per logical core unless told otherwise
  options.intraOpNumThreads = intraOpThreads ?? navigator.hardwareConcurrency;
  const session: Record<string, unknown> = {};
  if (disablePrepacking) session.disable_prepacking = "1";
  // idle intra-op threads spin by default, burning cores a sidecar shares
  // with its model server (and with its own JS thread and nats-server)
  if (!spinning) session.intra_op = { allow_spinning: "0" };
  if (Object.keys(session).length > 0) options.extra = { session };
  return options;
}

/**
 * Open an onnxruntime session on `model`: from an in-memory protobuf when its
 * initializers fit under `threshold` bytes, else through external data in a
 * temporary folder that is removed once the session holds the weights.
 *
 * @example
 * ```ts
 * import { buildEncoderGraph } from "./onnx_graph.ts";
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const session = await openSession(buildEncoderGraph(sae), sessionOptions(2));
 * ```
 */
export function openSession(
  model: OnnxTypes.IModelProto,
  options: ort.InferenceSession.SessionOptions,
  threshold = DEFAULT_EXTERNAL_DATA_THRESHOLD,
  onProgress?: ProgressFn,
): Promise<ort.InferenceSession> {
  return withModelSource(model, threshold, onProgress, (source) => {
    return createSession(source, options, onProgress);
  });
}

/** Options of {@linkcode openProviderSession}. */
export interface ProviderSessionOptions {
  /** Execution provider setting (default `cpu`). */
  provider?: ExecutionProviderSetting;
  /** onnxruntime intra-op threads (default: one per logical core). */
  intraOpThreads?: number;
  /** See {@linkcode sessionOptions}. */
  disablePrepacking?: boolean;
  /** Let idle intra-op threads spin-wait for work (onnxruntime's default, true). */
  spinning?: boolean;
  /** Bytes of initializers above which external data is used (default 1.5 GiB). */
  threshold?: number;
  onProgress?: ProgressFn;
}

/** A session and the provider it runs on. */
export interface ProviderSession extends ProviderReport {
  session: ort.InferenceSession;
}

/**
 * Open a session on `model` on the provider `opts.provider` picks
 * (`provider.ts`): the model is serialised (or written as external data)
 * once, and a GPU provider that cannot start falls back to the CPU with the
 * reason in `providerNote`. With `cpu` this is {@linkcode openSession}.
 *
 * @throws {TypeError | RangeError} for an unknown provider name
 *
 * @example
 * ```ts
 * import type { onnx } from "onnx-proto";
 * declare const model: onnx.IModelProto;
 * const { session, provider, providerNote } = await openProviderSession(model, { provider: "auto" });
 * ```
 */
export function openProviderSession(
  model: OnnxTypes.IModelProto,
  opts: ProviderSessionOptions = {},
): Promise<ProviderSession> {
  const setting = parseProviderSetting(opts.provider ?? "cpu");
  const { onProgress } = opts;
  return withModelSource(
    model,
    opts.threshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD,
    onProgress,
    async (source) => {
      const r = await onProvider(setting, (provider) =>
        createSession(
          source,
          sessionOptions(opts.intraOpThreads, opts.disablePrepacking, provider, opts.spinning),
          onProgress,
        ));
      return {
        session: r.value,
        provider: r.provider,
        ...(r.providerNote ? { providerNote: r.providerNote } : {}),
        providerFallback: r.providerFallback,
      };
    },
  );
}

async function createSession(
  source: Uint8Array | string,
  options: ort.InferenceSession.SessionOptions,
  onProgress?: ProgressFn,
): Promise<ort.InferenceSession> {
  onProgress?.(0, 1, "session");
  const session = typeof source === "string"
    ? await ort.InferenceSession.create(source, options)
    : await ort.InferenceSession.create(source, options);
  onProgress?.(1, 1, "session");
  return session;
}

/**
 * Hand `use` the model as onnxruntime reads it: protobuf bytes when the
 * initializers fit under `threshold`, else the path of a model written with
 * external data into a temporary folder, removed once `use` is done.
 */
async function withModelSource<T>(
  model: OnnxTypes.IModelProto,
  threshold: number,
  onProgress: ProgressFn | undefined,
  use: (source: Uint8Array | string) => Promise<T>,
): Promise<T> {
  if (initializerBytes(model) <= threshold) {
    onProgress?.(0, 1, "serialize");
    const bytes = onnxProto.onnx.ModelProto.encode(model).finish();
    onProgress?.(1, 1, "serialize");
    return await use(bytes);
  }
  const dir = await Deno.makeTempDir({ prefix: "latentwatch_onnx_" });
  try {
    return await use(await writeModelWithExternalData(model, dir, onProgress));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The feeds of an encoder graph for `tokens` rows of `x` (checked as the
 * `Encoder` contract asks), or null for an empty batch.
 *
 * @example
 * ```ts
 * const feeds = encoderFeeds(new Float32Array(8), 2, 4); // { x: Tensor [2, 4] }
 * ```
 */
export function encoderFeeds(
  x: Float32Array,
  tokens: number,
  dIn: number,
): Record<string, ort.Tensor> | null {
  const n = checkEncodeInput(x, tokens, dIn);
  if (tokens === 0) return null;
  const data = x.length === n ? x : x.subarray(0, n);
  return { [INPUT_NAME]: new ort.Tensor("float32", data, [tokens, dIn]) };
}
