/**
 * When `execution.provider` (`auto` or `cuda`) hands a full encode to
 * latentwatch's own CUDA encoder (`cuda_encoder.ts`, cuBLAS and NVRTC
 * kernels through Deno's FFI) before onnxruntime's providers: on an H200 it
 * ran gemma-2-2b's 16k SAE 250× faster than onnxruntime's WebGPU provider
 * (docs/gpu.md). Watched encodes stay on onnxruntime (a few columns cost
 * the CPU nothing), and so do TopK and gated SAEs, which the CUDA encoder
 * does not run.
 *
 * @module
 */
import type { SaeWeights } from "../core/sae.ts";
import { createCudaEncoder, type CudaEncoder, CudaEncoderConfigError } from "./cuda_encoder.ts";
import { CudaError, CudaUnavailableError } from "./cuda_errors.ts";
import { cudaRuntime } from "./cuda_ffi.ts";
import { watchIsCheap } from "./onnx_graph.ts";
import type { Availability, ExecutionProviderSetting, ProviderReport } from "./provider.ts";

/**
 * Rows per batch on the device: batches above it are split. 1024 keeps the
 * pre-activations of a 131k-wide SAE at 512 MiB and ran at 975k tokens/s.
 */
export const CUDA_ENCODER_ROWS = 1024;

/**
 * Whether the CUDA encoder is tried for this encode: the setting allows a
 * GPU (`auto`, `cuda`), the encode is full (no watch, or one that saves no
 * work), and the SAE is standard or JumpReLU.
 *
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
 * cudaEncoderTakes(sae, "auto"); // true
 * cudaEncoderTakes(sae, "cpu"); // false
 * cudaEncoderTakes(sae, "auto", new Uint32Array([3])); // false: a watched encode
 * ```
 */
export function cudaEncoderTakes(
  sae: SaeWeights,
  setting: ExecutionProviderSetting,
  watch?: Uint32Array,
): boolean {
  if (setting !== "auto" && setting !== "cuda") return false;
  if (watch && watchIsCheap(sae)) return false;
  return sae.architecture === "standard" || sae.architecture === "jumprelu";
}

/** Why the CUDA encoder did not start: one line, and whether there is no usable CUDA at all. */
export interface CudaFailure {
  reason: string;
  /** No driver, GPU, cuBLAS or NVRTC: the ordinary case on a machine without an NVIDIA GPU. */
  unavailable: boolean;
}

/**
 * Open the CUDA encoder (`precision: auto`: exact either way), or say in
 * one line why it cannot start here: no usable CUDA (no driver, GPU, cuBLAS
 * or NVRTC), a CUDA error (out of device memory, a kernel that does not
 * compile), or an SAE it does not take. Any other error is a fault and
 * propagates.
 *
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * const tried = tryCudaEncoder(randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 }));
 * if ("reason" in tried) console.log(tried.reason); // "cannot load the CUDA driver (...)" without a GPU
 * else await tried.encoder.close();
 * ```
 */
export function tryCudaEncoder(sae: SaeWeights): { encoder: CudaEncoder } | CudaFailure {
  try {
    return { encoder: createCudaEncoder(sae, { maxRows: CUDA_ENCODER_ROWS, precision: "auto" }) };
  } catch (err) {
    if (
      err instanceof CudaUnavailableError || err instanceof CudaError ||
      err instanceof CudaEncoderConfigError
    ) {
      return {
        reason: err.message.split("\n")[0],
        unavailable: err instanceof CudaUnavailableError,
      };
    }
    throw err;
  }
}

/**
 * Whether the CUDA encoder can start in this process (driver, a GPU,
 * cuBLAS and NVRTC), without an SAE: the process's CUDA runtime, loaded once.
 *
 * @example
 * ```ts
 * cudaAvailability(); // { available: false, reason: "cannot load the CUDA driver (...)" } without a GPU
 * ```
 */
export function cudaAvailability(): Availability {
  try {
    cudaRuntime();
    return { available: true };
  } catch (err) {
    if (!(err instanceof CudaUnavailableError || err instanceof CudaError)) throw err;
    return { available: false, reason: err.message.split("\n")[0] };
  }
}

/**
 * `report` with why the CUDA encoder did not start put first in its note
 * (a fallback worth a warning): when `cuda` was asked for by name, or when
 * CUDA is there and the encoder still failed (out of device memory, say).
 * `auto` stays quiet about a machine without usable CUDA, as it does for
 * onnxruntime's providers.
 *
 * @example
 * ```ts
 * const r = withCudaNote(
 *   { provider: "cpu", providerNote: "cuda could not start: x; running on cpu", providerFallback: true },
 *   "cuda",
 *   { reason: "no driver", unavailable: true },
 * );
 * r.providerNote; // "cuda-ffi could not start: no driver; cuda could not start: x; running on cpu"
 * ```
 */
export function withCudaNote<T extends ProviderReport>(
  report: T,
  setting: ExecutionProviderSetting,
  failure: CudaFailure,
): T {
  if (setting !== "cuda" && failure.unavailable) return report;
  const note = `cuda-ffi could not start: ${failure.reason}`;
  return {
    ...report,
    providerNote: report.providerNote
      ? `${note}; ${report.providerNote}`
      : `${note}; running on ${report.provider}`,
    providerFallback: true,
  };
}
