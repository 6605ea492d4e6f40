/**
 * The device buffers of a WebGPU SAE encoder: the weights, uploaded once and
 * padded to the kernels' tiles, and the per-batch slots (input, dense
 * pre-activations, compacted pairs, readback) with their bind groups.
 *
 * @module
 */

import type { SaeWeights } from "../core/sae.ts";
import { USAGE } from "./webgpu_device.ts";
import { roundUp } from "./webgpu_kernels.ts";

const { STORAGE, COPY_SRC, COPY_DST, MAP_READ, UNIFORM } = USAGE;

/** One batch's buffers and bind groups; a pool of these bounds the batches in flight. */
export interface Slot {
  x: GPUBuffer;
  norm: GPUBuffer;
  dense: GPUBuffer;
  idx: GPUBuffer;
  val: GPUBuffer;
  count: GPUBuffer;
  dims: GPUBuffer;
  readback: GPUBuffer;
  cap: number;
  gemmGroup: GPUBindGroup;
  compactGroup: GPUBindGroup;
}

/** Padded sizes of an encoder's matrices (the kernels' tiles divide them). */
export interface PaddedDims {
  dInPad: number;
  dSaePad: number;
}

/**
 * A buffer of at least `bytes` (rounded up to 16, at least 16), written from
 * `init` when given.
 *
 * @example
 * ```ts
 * import { gpuBuffer } from "./webgpu_buffers.ts";
 * import { USAGE } from "./webgpu_device.ts";
 * declare const device: GPUDevice;
 * const buf = gpuBuffer(device, 64, USAGE.STORAGE | USAGE.COPY_DST, new Float32Array(16));
 * buf.destroy();
 * ```
 */
export function gpuBuffer(
  device: GPUDevice,
  bytes: number,
  usage: number,
  init?: Float32Array,
): GPUBuffer {
  const buf = device.createBuffer({ size: roundUp(Math.max(bytes, 16), 16), usage });
  if (init) device.queue.writeBuffer(buf, 0, init as Float32Array<ArrayBuffer>);
  return buf;
}

/**
 * Upload `W_enc`, `b_enc`, the thresholds and `b_dec`, padded to `dims`:
 * padded latents get a threshold no value reaches, so they are never active.
 * Returns the buffers in the GEMM's binding order (w, bias, thr, bdec);
 * `extraUsage` adds usage flags (a test reads them back with `COPY_SRC`).
 *
 * @example
 * ```ts
 * import { uploadEncoderWeights } from "./webgpu_buffers.ts";
 * import { randomSae } from "../formats/random_sae.ts";
 * declare const device: GPUDevice;
 * const sae = randomSae({ architecture: "jumprelu", dIn: 60, dSae: 100, seed: 1 });
 * const buffers = uploadEncoderWeights(device, sae, { dInPad: 64, dSaePad: 256 });
 * console.assert(buffers.length === 4); // w, bias, thr, bdec
 * ```
 */
export function uploadEncoderWeights(
  device: GPUDevice,
  sae: SaeWeights,
  dims: PaddedDims,
  extraUsage = 0,
): GPUBuffer[] {
  const { dIn, dSae } = sae;
  const { dInPad, dSaePad } = dims;
  let w = sae.wEnc;
  if (dIn !== dInPad || dSae !== dSaePad) {
    w = new Float32Array(dInPad * dSaePad);
    for (let j = 0; j < dIn; j++) {
      w.set(sae.wEnc.subarray(j * dSae, (j + 1) * dSae), j * dSaePad);
    }
  }
  const bias = new Float32Array(dSaePad);
  bias.set(sae.bEnc);
  // Padded latents can never be active; standard SAEs threshold at 0 (f = relu(h)).
  const thr = new Float32Array(dSaePad).fill(3.4e38);
  if (sae.threshold) thr.set(sae.threshold);
  else thr.fill(0, 0, dSae);
  const bdec = new Float32Array(dInPad);
  if (sae.applyBDecToInput && (sae.kind ?? "sae") === "sae") bdec.set(sae.bDec);
  const usage = STORAGE | COPY_DST | extraUsage;
  return [w, bias, thr, bdec].map((a) => gpuBuffer(device, a.byteLength, usage, a));
}

/** What a slot is built from: the encoder's sizes, weights and pipelines. */
export interface SlotPlan extends PaddedDims {
  /** Rows (tokens) the slot holds. */
  rows: number;
  /** Active latents read back per token. */
  cap: number;
  /** The weight buffers from {@linkcode uploadEncoderWeights}. */
  weights: GPUBuffer[];
  gemmLayout: GPUBindGroupLayout;
  compact: GPUComputePipeline;
}

/**
 * A slot's buffers and bind groups. Each row's normalisation starts as
 * (shift 0, scale 1), what an SAE without input normalisation needs.
 *
 * @example
 * ```ts
 * import { makeSlot } from "./webgpu_buffers.ts";
 * declare const device: GPUDevice;
 * declare const weights: GPUBuffer[];
 * declare const gemmLayout: GPUBindGroupLayout;
 * declare const compact: GPUComputePipeline;
 * const plan = { rows: 256, cap: 128, dInPad: 768, dSaePad: 24576, weights, gemmLayout, compact };
 * const slot = makeSlot(device, plan);
 * console.assert(slot.cap === 128);
 * ```
 */
export function makeSlot(device: GPUDevice, plan: SlotPlan): Slot {
  const { rows, cap, dInPad, dSaePad } = plan;
  const x = gpuBuffer(device, rows * dInPad * 4, STORAGE | COPY_DST);
  const normInit = new Float32Array(rows * 2);
  for (let r = 0; r < rows; r++) normInit[2 * r + 1] = 1;
  const norm = gpuBuffer(device, rows * 8, STORAGE | COPY_DST, normInit);
  const dense = gpuBuffer(device, rows * dSaePad * 4, STORAGE);
  const idx = gpuBuffer(device, rows * cap * 4, STORAGE | COPY_SRC);
  const val = gpuBuffer(device, rows * cap * 4, STORAGE | COPY_SRC);
  const count = gpuBuffer(device, rows * 4, STORAGE | COPY_SRC);
  const dims = gpuBuffer(device, 16, UNIFORM | COPY_DST);
  const readback = gpuBuffer(device, rows * (1 + 2 * cap) * 4, MAP_READ | COPY_DST);
  const [w, bias, thr, bdec] = plan.weights;
  const gemmGroup = device.createBindGroup({
    layout: plan.gemmLayout,
    entries: [x, w, bias, thr, bdec, norm, dense, dims].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  const compactGroup = compactBindGroup(device, plan.compact, { dense, idx, val, count, dims });
  return { x, norm, dense, idx, val, count, dims, readback, cap, gemmGroup, compactGroup };
}

/** The compaction's buffers: dense pre-activations in, pairs and counts out. */
export type CompactBuffers = Pick<Slot, "dense" | "idx" | "val" | "count" | "dims">;

/**
 * The compaction kernel's bind group over `buffers`.
 *
 * @example
 * ```ts
 * import { compactBindGroup, type Slot } from "./webgpu_buffers.ts";
 * declare const device: GPUDevice;
 * declare const compact: GPUComputePipeline;
 * declare const slot: Slot;
 * const group = compactBindGroup(device, compact, slot);
 * ```
 */
export function compactBindGroup(
  device: GPUDevice,
  compact: GPUComputePipeline,
  buffers: CompactBuffers,
): GPUBindGroup {
  const { dense, idx, val, count, dims } = buffers;
  return device.createBindGroup({
    layout: compact.getBindGroupLayout(0),
    entries: [dense, idx, val, count, dims].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
}
