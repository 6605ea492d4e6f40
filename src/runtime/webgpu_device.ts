/**
 * The WebGPU device for latentwatch's GPU encoders (Deno's own WebGPU: wgpu,
 * Vulkan on Linux): asking for an adapter and a device with the limits an
 * SAE's encoder matrix needs, reporting what was found, and running work
 * inside error scopes so a refused dispatch becomes a named error instead of
 * zeros. The encoder's named errors are declared here.
 *
 * @module
 */

/** No WebGPU adapter or device here (no `navigator.gpu`, no Vulkan driver, or limits too small). */
export class WebGpuUnavailableError extends Error {
  override name = "WebGpuUnavailableError";
}

/** The device refused work it was given (validation or out of memory): what and where. */
export class WebGpuEncodeError extends Error {
  override name = "WebGpuEncodeError";
}

/** An SAE or option the WebGPU encoder does not take (TopK and gated SAEs, a bad `maxRows`, a tiling too large). */
export class WebGpuEncoderConfigError extends TypeError {
  override name = "WebGpuEncoderConfigError";
}

/** The adapter's description (`GPUAdapterInfo`) as plain fields. */
export interface WebGpuAdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  /** The adapter's optional features (`shader-f16`, `subgroups`, …). */
  features: string[];
  /** The adapter limits the encoder depends on. */
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeWorkgroupsPerDimension: number;
  };
}

/**
 * Request a high-performance adapter and a device with the adapter's largest
 * buffer limits (an SAE's encoder matrix is often above WebGPU's 128 MiB
 * default binding limit).
 *
 * @throws {WebGpuUnavailableError} saying what is missing
 * @example
 * ```ts
 * const { device, adapter } = await requestWebGpuDevice();
 * console.log(adapter.description);
 * device.destroy();
 * ```
 */
export async function requestWebGpuDevice(): Promise<
  { device: GPUDevice; adapter: WebGpuAdapterReport }
> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new WebGpuUnavailableError("navigator.gpu is not defined in this runtime");
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new WebGpuUnavailableError(
      "no WebGPU adapter: install a Vulkan loader (libvulkan1) and a driver (see docs/gpu.md)",
    );
  }
  const storageBuffers = adapter.limits.maxStorageBuffersPerShaderStage;
  if (storageBuffers < STORAGE_BINDINGS) {
    throw new WebGpuUnavailableError(
      `the adapter allows ${storageBuffers} storage buffers per shader stage, the encoder binds ` +
        `${STORAGE_BINDINGS}`,
    );
  }
  // the adapter's own limits: W_enc is often above the 128 MiB default binding size, and the
  // larger tilings use more than the 16 KiB default of workgroup memory
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: storageBuffers,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    },
  });
  const info = adapter.info;
  return {
    device,
    adapter: {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      isFallbackAdapter: (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
      features: [...adapter.features].sort(),
      limits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
        maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: adapter.limits.maxComputeWorkgroupsPerDimension,
      },
    },
  };
}

/** GPUBufferUsage and GPUShaderStage flags, as numbers (the globals are absent where WebGPU is not). */
export const USAGE = {
  STORAGE: 0x0080,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  MAP_READ: 0x0001,
  UNIFORM: 0x0040,
} as const;
/** GPUShaderStage.COMPUTE. */
export const COMPUTE_STAGE = 0x4;
/** Storage buffers the encoder's GEMM binds (x, w, bias, thr, bdec, norm, dense). */
const STORAGE_BINDINGS = 7;

/**
 * Run `f` inside validation and out-of-memory error scopes; the promise
 * rejects with {@linkcode WebGpuEncodeError} when the device reported either.
 * Scopes are popped before any await, so concurrent batches do not share one.
 *
 * @example
 * ```ts
 * import { guarded } from "./webgpu_device.ts";
 * declare const device: GPUDevice;
 * const { value: buffer, checked } = guarded(device, "a scratch buffer", () =>
 *   device.createBuffer({ size: 64, usage: 0x0080 }));
 * await checked; // throws WebGpuEncodeError if the device refused it
 * buffer.destroy();
 * ```
 */
export function guarded<T>(
  device: GPUDevice,
  what: string,
  f: () => T,
): { value: T; checked: Promise<void> } {
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  let value: T;
  let popped: Promise<GPUError | null>[];
  try {
    value = f();
  } finally {
    popped = [device.popErrorScope(), device.popErrorScope()];
  }
  const checked = Promise.all(popped).then(([a, b]) => {
    const e = a ?? b;
    if (e) throw new WebGpuEncodeError(`${what}: the device refused it: ${e.message}`);
  });
  return { value, checked };
}
