/**
 * The compute pipelines of the WebGPU encoder (`webgpu_encoder.ts`): the
 * bind-group layout that every GEMM tiling shares, the compaction pipeline,
 * the GEMM pipelines compiled per tiling on first use, and the tiling a batch
 * runs with (by its size, among those that fit the device's workgroup
 * memory).
 *
 * @module
 */

import { COMPUTE_STAGE as COMPUTE, WebGpuEncoderConfigError } from "./webgpu_device.ts";
import {
  compactWgsl,
  GEMM_TILES,
  gemmActivateWgsl,
  type GemmTileName,
  tileSharedBytes,
} from "./webgpu_kernels.ts";

/**
 * Choose a tiling by batch size: a first guess until a GPU run measures them (`bench/gpu.ts`).
 *
 * @example
 * ```ts
 * import { tileForRows } from "./webgpu_pipelines.ts";
 * tileForRows(64); // "small"
 * tileForRows(4096); // "large"
 * ```
 */
export function tileForRows(rows: number): GemmTileName {
  if (rows <= 256) return "small";
  if (rows <= 1024) return "medium";
  return "large";
}

/**
 * An encoder's pipelines on one device: `gemmLayout` and `compact` made at
 * once, a GEMM pipeline per tiling made when a batch first asks for it.
 *
 * @example
 * ```ts
 * import { WebGpuPipelines } from "./webgpu_pipelines.ts";
 * declare const device: GPUDevice;
 * const pipelines = new WebGpuPipelines(device);
 * const tile = pipelines.tileFor(200); // "small", where it fits
 * const pass = device.createCommandEncoder().beginComputePass();
 * pass.setPipeline(pipelines.gemm(tile));
 * ```
 */
export class WebGpuPipelines {
  /** The GEMM's bind-group layout: one for every tiling, so a slot's bind group serves whichever pipeline runs. */
  readonly gemmLayout: GPUBindGroupLayout;
  /** The compaction pipeline (`compactWgsl`). */
  readonly compact: GPUComputePipeline;
  readonly #device: GPUDevice;
  readonly #tile?: GemmTileName;
  /** Pipelines by tiling, compiled on first use (a compile can take seconds on a software driver). */
  readonly #gemm = new Map<GemmTileName, GPUComputePipeline>();

  /** The layout and the compaction pipeline on `device`; `tile`, when given, is every batch's tiling. */
  constructor(device: GPUDevice, tile?: GemmTileName) {
    this.#device = device;
    this.#tile = tile;
    // One layout for every tiling, so a slot's bind group serves whichever pipeline runs.
    const storage = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({
      binding,
      visibility: COMPUTE,
      buffer: { type },
    });
    this.gemmLayout = device.createBindGroupLayout({
      entries: [
        ...[0, 1, 2, 3, 4, 5].map((b) => storage(b, "read-only-storage")),
        storage(6, "storage"),
        storage(7, "uniform"),
      ],
    });
    const compact = device.createShaderModule({ code: compactWgsl() });
    this.compact = device.createComputePipeline({
      layout: "auto",
      compute: { module: compact, entryPoint: "main" },
    });
  }

  /** Whether tiling `tile` fits this device's workgroup memory. */
  tileFits(tile: GemmTileName): boolean {
    return tileSharedBytes(GEMM_TILES[tile]) <= this.#device.limits.maxComputeWorkgroupStorageSize;
  }

  /** The tiling for a batch: the one asked for (refused later if it does not fit), else by size, else the largest that fits. */
  tileFor(rows: number): GemmTileName {
    if (this.#tile) return this.#tile;
    const want = tileForRows(rows);
    if (this.tileFits(want)) return want;
    for (const t of ["large", "medium", "small"] as const) if (this.tileFits(t)) return t;
    return "small";
  }

  /**
   * The GEMM pipeline of tiling `tile`, compiled on its first use.
   *
   * @throws {WebGpuEncoderConfigError} where the tiling does not fit the device's workgroup memory
   */
  gemm(tile: GemmTileName): GPUComputePipeline {
    let pipeline = this.#gemm.get(tile);
    if (!pipeline) {
      if (!this.tileFits(tile)) {
        throw new WebGpuEncoderConfigError(
          `tiling ${tile} needs ${tileSharedBytes(GEMM_TILES[tile])} bytes of workgroup memory, ` +
            `the device allows ${this.#device.limits.maxComputeWorkgroupStorageSize}`,
        );
      }
      const module = this.#device.createShaderModule({ code: gemmActivateWgsl(GEMM_TILES[tile]) });
      pipeline = this.#device.createComputePipeline({
        layout: this.#device.createPipelineLayout({ bindGroupLayouts: [this.gemmLayout] }),
        compute: { module, entryPoint: "main" },
      });
      this.#gemm.set(tile, pipeline);
    }
    return pipeline;
  }
}
