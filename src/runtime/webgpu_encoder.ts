/**
 * A full SAE encode on the GPU through Deno's own WebGPU (wgpu; Vulkan on
 * Linux), for standard (ReLU) and JumpReLU SAEs: exact f32 arithmetic (a
 * tiled GEMM with f32 accumulation, `webgpu_kernels.ts`), the bias and the
 * activation applied in the GEMM's last pass, and the active latents compacted
 * on the device, in index order, so a token costs `dIn` floats up and
 * `cap` (index, value) pairs down.
 *
 * Batches run in a bounded pool of slots (`inFlight`, default 2), so one
 * batch's upload and readback overlap another's kernels; a batch larger than
 * `maxRows` is split. A token with more than `cap` active latents is never
 * truncated: the batch is compacted again with a cap that holds it
 * (`stats().recompactions` counts these). The pipelines and the choice of
 * tiling are in `webgpu_pipelines.ts`, the readback in `webgpu_readback.ts`.
 *
 * @module
 */

import type { Encoder, SaeWeights, SparseLatents } from "../core/sae.ts";
import { referenceNormStats } from "../core/reference_encoder.ts";
import { checkEncodeInput } from "../core/encoder_checks.ts";
import {
  guarded,
  requestWebGpuDevice,
  type WebGpuAdapterReport,
  WebGpuEncoderConfigError,
  WebGpuUnavailableError,
} from "./webgpu_device.ts";
import {
  fitRows,
  GEMM_TILES,
  type GemmTileName,
  PAD_COLS,
  PAD_DEPTH,
  PAD_ROWS,
  roundUp,
} from "./webgpu_kernels.ts";
import { makeSlot, type Slot, uploadEncoderWeights } from "./webgpu_buffers.ts";
import { WebGpuPipelines } from "./webgpu_pipelines.ts";
import { copyBack, readCompacted, recompact } from "./webgpu_readback.ts";

export {
  requestWebGpuDevice,
  type WebGpuAdapterReport,
  WebGpuEncodeError,
  WebGpuEncoderConfigError,
  WebGpuUnavailableError,
} from "./webgpu_device.ts";
export { tileForRows } from "./webgpu_pipelines.ts";

/** Options for {@linkcode createWebGpuEncoder}. */
export interface WebGpuEncoderOptions {
  /** Largest batch one dispatch takes; bigger batches are split (default 4096). */
  maxRows?: number;
  /** Batches in flight at once, each with its own buffers (default 2). */
  inFlight?: number;
  /** Active latents read back per token before a batch is compacted again (default 128). */
  cap?: number;
  /** Force one tiling instead of choosing by batch size. */
  tile?: GemmTileName;
  /** Use this device instead of requesting one (the caller keeps ownership). */
  device?: GPUDevice;
}

/** What the encoder has done, for reports and the bench. */
export interface WebGpuEncoderStats {
  batches: number;
  tokens: number;
  /** Batches compacted a second time because a token had more than `cap` active latents. */
  recompactions: number;
}

/** A full-encode {@linkcode Encoder} on WebGPU, with its device-side timing hook. */
export interface WebGpuEncoder extends Encoder {
  readonly engine: "deno-webgpu";
  /** The adapter the encoder runs on (absent when a device was passed in). */
  readonly adapter?: WebGpuAdapterReport;
  stats(): WebGpuEncoderStats;
  /**
   * Run the GEMM and compaction `repeats` times on `rows` tokens already on
   * the device (no upload, no readback) and return the seconds they took:
   * the kernels' own throughput.
   */
  timeKernels(rows: number, repeats: number, tile?: GemmTileName): Promise<number>;
  /** Whether a tiling fits the device's workgroup memory (the others are never chosen). */
  tileFits(tile: GemmTileName): boolean;
}

/**
 * Create a WebGPU encoder for a standard or JumpReLU SAE.
 *
 * @throws {WebGpuEncoderConfigError} for TopK and gated SAEs
 * @throws {WebGpuUnavailableError} when no device can be had or the encoder matrix exceeds its limits
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
 * const enc = await createWebGpuEncoder(sae);
 * const [first] = await enc.encode(new Float32Array(16), 1);
 * await enc.close();
 * ```
 */
export async function createWebGpuEncoder(
  sae: SaeWeights,
  options: WebGpuEncoderOptions = {},
): Promise<WebGpuEncoder> {
  if (sae.architecture !== "standard" && sae.architecture !== "jumprelu") {
    throw new WebGpuEncoderConfigError(
      `${sae.source}: the WebGPU encoder runs standard and JumpReLU SAEs, found ${sae.architecture}`,
    );
  }
  if (sae.architecture === "jumprelu" && sae.threshold?.length !== sae.dSae) {
    throw new WebGpuEncoderConfigError(`${sae.source}: JumpReLU SAE needs threshold [${sae.dSae}]`);
  }
  const owned = options.device === undefined;
  const got = owned ? await requestWebGpuDevice() : undefined;
  const device = options.device ?? got!.device;
  try {
    const { value: encoder, checked } = guarded(
      device,
      `${sae.source}: create the encoder`,
      () => new WebGpuSaeEncoder(sae, device, options, owned, got?.adapter),
    );
    await checked.catch(async (err) => {
      await encoder.close();
      throw err;
    });
    return encoder;
  } catch (err) {
    if (owned) device.destroy();
    throw err;
  }
}

class WebGpuSaeEncoder implements WebGpuEncoder {
  readonly engine = "deno-webgpu" as const;
  readonly provider = "webgpu" as const;
  readonly providerFallback = false;
  readonly dIn: number;
  readonly dSae: number;
  readonly #dInPad: number;
  readonly #dSaePad: number;
  readonly #maxRows: number;
  readonly #device: GPUDevice;
  readonly #owned: boolean;
  readonly #sae: SaeWeights;
  readonly #weights: GPUBuffer[] = [];
  readonly #pipelines: WebGpuPipelines;
  readonly #slots: Slot[] = [];
  readonly #free: Slot[] = [];
  readonly #waiting: ((s: Slot) => void)[] = [];
  readonly #stats: WebGpuEncoderStats = { batches: 0, tokens: 0, recompactions: 0 };
  readonly adapter?: WebGpuAdapterReport;

  constructor(
    sae: SaeWeights,
    device: GPUDevice,
    options: WebGpuEncoderOptions,
    owned: boolean,
    adapter?: WebGpuAdapterReport,
  ) {
    this.#sae = sae;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
    this.#device = device;
    this.#owned = owned;
    this.adapter = adapter;
    this.#dInPad = roundUp(sae.dIn, PAD_DEPTH);
    this.#dSaePad = roundUp(sae.dSae, PAD_COLS);
    const requested = options.maxRows ?? 4096;
    if (!Number.isSafeInteger(requested) || requested < 1) {
      throw new WebGpuEncoderConfigError(
        `maxRows: expected a positive integer, found ${requested}`,
      );
    }
    const cap = Math.max(4, options.cap ?? 128);
    this.#maxRows = fitRows(
      requested,
      { dInPad: this.#dInPad, dSaePad: this.#dSaePad, cap },
      device.limits,
    );
    if (this.#maxRows === 0) {
      throw new WebGpuUnavailableError(
        `${sae.source}: not even ${PAD_ROWS} rows of ${this.#dSaePad} latents fit this device's buffers`,
      );
    }
    const wBytes = this.#dInPad * this.#dSaePad * 4;
    const limit = device.limits.maxStorageBufferBindingSize;
    if (wBytes > limit) {
      throw new WebGpuUnavailableError(
        `${sae.source}: W_enc needs ${wBytes} bytes in one binding, the device allows ${limit}`,
      );
    }
    const dims = { dInPad: this.#dInPad, dSaePad: this.#dSaePad };
    this.#weights.push(...uploadEncoderWeights(device, sae, dims));
    this.#pipelines = new WebGpuPipelines(device, options.tile);
    const inFlight = Math.max(1, options.inFlight ?? 2);
    for (let i = 0; i < inFlight; i++) {
      const slot = makeSlot(device, {
        ...dims,
        rows: this.#maxRows,
        cap,
        weights: this.#weights,
        gemmLayout: this.#pipelines.gemmLayout,
        compact: this.#pipelines.compact,
      });
      this.#slots.push(slot);
      this.#free.push(slot);
    }
  }

  /** Whether tiling `tile` fits this device's workgroup memory. */
  tileFits(tile: GemmTileName): boolean {
    return this.#pipelines.tileFits(tile);
  }

  async #acquire(): Promise<Slot> {
    const slot = this.#free.pop();
    if (slot) return slot;
    return await new Promise<Slot>((resolve) => this.#waiting.push(resolve));
  }

  #release(slot: Slot): void {
    const next = this.#waiting.shift();
    if (next) next(slot);
    else this.#free.push(slot);
  }

  stats(): WebGpuEncoderStats {
    return { ...this.#stats };
  }

  async encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    checkEncodeInput(x, tokens, this.dIn);
    const chunks: Promise<SparseLatents[]>[] = [];
    for (let r0 = 0; r0 < tokens; r0 += this.#maxRows) {
      const n = Math.min(this.#maxRows, tokens - r0);
      chunks.push(this.#encodeChunk(x.subarray(r0 * this.dIn, (r0 + n) * this.dIn), n));
    }
    return (await Promise.all(chunks)).flat();
  }

  async #encodeChunk(x: Float32Array, rows: number): Promise<SparseLatents[]> {
    if (rows === 0) return [];
    const slot = await this.#acquire();
    try {
      const tile = this.#pipelines.tileFor(rows);
      const { checked } = guarded(this.#device, `encode ${rows} tokens (${tile})`, () => {
        this.#upload(slot, x, rows);
        const enc = this.#device.createCommandEncoder();
        this.#dispatch(enc, slot, rows, tile);
        copyBack(enc, slot, rows);
        this.#device.queue.submit([enc.finish()]);
      });
      const read = readCompacted(slot, rows);
      // a refused submit still maps a readback buffer: its error must win over its zeros
      await Promise.all([checked, read.catch(() => {})]);
      let out = await read;
      if (out.maxCount > slot.cap) {
        // Never truncate: compact once more with a cap that holds the fullest token.
        this.#stats.recompactions++;
        out = await recompact(this.#device, {
          compact: this.#pipelines.compact,
          dInPad: this.#dInPad,
          dSaePad: this.#dSaePad,
          slot,
          rows,
          maxCount: out.maxCount,
        });
      }
      this.#stats.batches++;
      this.#stats.tokens += rows;
      return out.latents;
    } finally {
      this.#release(slot);
    }
  }

  #upload(slot: Slot, x: Float32Array, rows: number): void {
    const q = this.#device.queue;
    if (this.dIn === this.#dInPad) {
      q.writeBuffer(slot.x, 0, x as Float32Array<ArrayBuffer>, 0, rows * this.dIn);
    } else {
      const padded = new Float32Array(rows * this.#dInPad);
      for (let r = 0; r < rows; r++) {
        padded.set(x.subarray(r * this.dIn, (r + 1) * this.dIn), r * this.#dInPad);
      }
      q.writeBuffer(slot.x, 0, padded);
    }
    if ((this.#sae.normalize ?? "none") !== "none") {
      const norm = new Float32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        const s = referenceNormStats(this.#sae, x.subarray(r * this.dIn, (r + 1) * this.dIn));
        norm[2 * r] = s.inShift;
        norm[2 * r + 1] = s.inMul;
      }
      q.writeBuffer(slot.norm, 0, norm);
    }
  }

  #dispatch(enc: GPUCommandEncoder, slot: Slot, rows: number, tile: GemmTileName): void {
    const t = GEMM_TILES[tile];
    const rowsPad = roundUp(rows, t.bm);
    this.#device.queue.writeBuffer(
      slot.dims,
      0,
      new Uint32Array([rowsPad, this.#dInPad, this.#dSaePad, slot.cap]),
    );
    const pass = enc.beginComputePass();
    pass.setPipeline(this.#pipelines.gemm(tile));
    pass.setBindGroup(0, slot.gemmGroup);
    pass.dispatchWorkgroups(this.#dSaePad / t.bn, rowsPad / t.bm);
    pass.setPipeline(this.#pipelines.compact);
    pass.setBindGroup(0, slot.compactGroup);
    pass.dispatchWorkgroups(rows);
    pass.end();
  }

  async timeKernels(rows: number, repeats: number, tile?: GemmTileName): Promise<number> {
    if (rows > this.#maxRows) {
      throw new RangeError(`timeKernels: ${rows} rows exceed maxRows ${this.#maxRows}`);
    }
    const slot = await this.#acquire();
    try {
      const name = tile ?? this.#pipelines.tileFor(rows);
      const run = async (n: number) => {
        const { checked } = guarded(this.#device, `time ${name} on ${rows} rows`, () => {
          const enc = this.#device.createCommandEncoder();
          for (let i = 0; i < n; i++) this.#dispatch(enc, slot, rows, name);
          this.#device.queue.submit([enc.finish()]);
        });
        await Promise.all([checked, this.#device.queue.onSubmittedWorkDone()]);
      };
      await run(1); // pipelines compiled and caches warm before timing
      const t0 = performance.now();
      await run(repeats);
      return (performance.now() - t0) / 1000;
    } finally {
      this.#release(slot);
    }
  }

  close(): Promise<void> {
    for (const s of this.#slots) {
      for (const b of [s.x, s.norm, s.dense, s.idx, s.val, s.count, s.dims, s.readback]) {
        b.destroy();
      }
    }
    for (const b of this.#weights) b.destroy();
    if (this.#owned) this.#device.destroy();
    return Promise.resolve();
  }
}
