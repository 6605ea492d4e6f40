/**
 * The CUDA encoder's error classes, shared by `cuda_ffi.ts` and `cuda_nvrtc.ts`.
 *
 * @module
 */

/** CUDA cannot be used here: no driver, no GPU, or no cuBLAS/NVRTC; says what was looked for. */
export class CudaUnavailableError extends Error {
  override name = "CudaUnavailableError";
}

/** A CUDA, cuBLAS or NVRTC call returned an error status: which call, what for, and the status. */
export class CudaError extends Error {
  override name = "CudaError";
}
