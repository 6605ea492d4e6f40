/**
 * The way a WebGPU batch's active latents come back to the host
 * (`webgpu_encoder.ts`): the counts and the compacted pairs copied into the
 * slot's mappable buffer, mapped and unpacked (`compacted.ts`), and, for a
 * batch with a token past its slot's `cap`, one more compaction into buffers
 * wide enough for the fullest token, so that no token is ever truncated.
 *
 * @module
 */

import type { SparseLatents } from "../core/sae.ts";
import { unpackCompacted } from "./compacted.ts";
import { guarded, USAGE } from "./webgpu_device.ts";
import { PAD_ROWS, roundUp } from "./webgpu_kernels.ts";
import { compactBindGroup, gpuBuffer, type PaddedDims, type Slot } from "./webgpu_buffers.ts";

const { STORAGE, COPY_SRC, COPY_DST, MAP_READ, UNIFORM } = USAGE;

/** What a batch's readback reads: the counts and pairs, the mappable buffer and its `cap`. */
export type ReadbackBuffers = Pick<Slot, "count" | "idx" | "val" | "readback" | "cap">;

/**
 * Record the copies of `rows` counts, then `rows × cap` indices and values,
 * into `slot.readback` (the layout of `compacted.ts`).
 *
 * @example
 * ```ts
 * import { copyBack } from "./webgpu_readback.ts";
 * import type { Slot } from "./webgpu_buffers.ts";
 * declare const device: GPUDevice;
 * declare const slot: Slot;
 * const enc = device.createCommandEncoder();
 * copyBack(enc, slot, 64);
 * device.queue.submit([enc.finish()]);
 * ```
 */
export function copyBack(enc: GPUCommandEncoder, slot: ReadbackBuffers, rows: number): void {
  const n = rows * slot.cap * 4;
  enc.copyBufferToBuffer(slot.count, 0, slot.readback, 0, rows * 4);
  enc.copyBufferToBuffer(slot.idx, 0, slot.readback, rows * 4, n);
  enc.copyBufferToBuffer(slot.val, 0, slot.readback, rows * 4 + n, n);
}

/**
 * Map `slot.readback` once the copies of {@linkcode copyBack} ran, and unpack
 * a copy of it: each token's latents, and the largest count (above
 * `slot.cap`, the batch must be compacted again).
 *
 * @example
 * ```ts
 * import { readCompacted } from "./webgpu_readback.ts";
 * import type { Slot } from "./webgpu_buffers.ts";
 * declare const slot: Slot;
 * const { latents, maxCount } = await readCompacted(slot, 64);
 * console.assert(latents.length === 64 && maxCount >= 0);
 * ```
 */
export async function readCompacted(
  slot: Pick<Slot, "readback" | "cap">,
  rows: number,
): Promise<{ latents: SparseLatents[]; maxCount: number }> {
  const cap = slot.cap;
  const bytes = rows * (1 + 2 * cap) * 4;
  await slot.readback.mapAsync(1, /* GPUMapMode.READ */ 0, bytes);
  const copy = slot.readback.getMappedRange(0, bytes).slice(0);
  slot.readback.unmap();
  return unpackCompacted(copy, rows, cap);
}

/** A batch to compact again: where it is, and how full its fullest token is. */
export interface Recompaction extends PaddedDims {
  /** The compaction pipeline (`WebGpuPipelines.compact`). */
  compact: GPUComputePipeline;
  /** The slot whose `dense` holds the batch's activations (its `count` is written again). */
  slot: Pick<Slot, "dense" | "count">;
  /** Tokens in the batch. */
  rows: number;
  /** The fullest token's count: the new cap is this rounded up to 32. */
  maxCount: number;
}

/**
 * Compact a batch already encoded in `slot.dense` again into buffers of `cap`
 * pairs per token (`maxCount` rounded up to 32), read it back, and destroy
 * those buffers.
 *
 * @throws {WebGpuEncodeError} where the device refused the compaction
 * @example
 * ```ts
 * import { recompact } from "./webgpu_readback.ts";
 * import type { Slot } from "./webgpu_buffers.ts";
 * declare const device: GPUDevice;
 * declare const compact: GPUComputePipeline;
 * declare const slot: Slot;
 * const job = { compact, slot, rows: 20, maxCount: 40, dInPad: 64, dSaePad: 512 };
 * const { latents } = await recompact(device, job); // room for 64 latents per token
 * ```
 */
export async function recompact(
  device: GPUDevice,
  job: Recompaction,
): Promise<{ latents: SparseLatents[]; maxCount: number }> {
  const { compact, slot, rows, maxCount, dInPad, dSaePad } = job;
  const cap = roundUp(maxCount, 32);
  const idx = gpuBuffer(device, rows * cap * 4, STORAGE | COPY_SRC);
  const val = gpuBuffer(device, rows * cap * 4, STORAGE | COPY_SRC);
  const dims = gpuBuffer(device, 16, UNIFORM | COPY_DST);
  const readback = gpuBuffer(device, rows * (1 + 2 * cap) * 4, MAP_READ | COPY_DST);
  try {
    const rowsPad = roundUp(rows, PAD_ROWS);
    device.queue.writeBuffer(
      dims,
      0,
      new Uint32Array([rowsPad, dInPad, dSaePad, cap]),
    );
    const wide = { ...slot, idx, val, dims, readback, cap };
    const { checked } = guarded(device, `compact ${rows} tokens, cap ${cap}`, () => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(compact);
      pass.setBindGroup(
        0,
        compactBindGroup(device, compact, {
          dense: slot.dense,
          idx,
          val,
          count: slot.count,
          dims,
        }),
      );
      pass.dispatchWorkgroups(rows);
      pass.end();
      copyBack(enc, wide, rows);
      device.queue.submit([enc.finish()]);
    });
    const read = readCompacted(wide, rows);
    await Promise.all([checked, read.catch(() => {})]);
    return await read;
  } finally {
    for (const b of [idx, val, dims, readback]) b.destroy();
  }
}
