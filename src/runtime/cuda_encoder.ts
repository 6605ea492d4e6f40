/**
 * A full SAE encode on an NVIDIA GPU through CUDA, reached with Deno's FFI
 * (`cuda_ffi.ts`), for standard (ReLU) and JumpReLU SAEs: a GEMM (cuBLAS's
 * f32 SGEMM, never TF32; or the split bf16 GEMM of `bf16x3`, whose
 * candidates are recomputed in f32), then kernels that add the bias, apply
 * the activation and compact each token's active latents in index order on
 * the device (`cuda_launch.ts`, `cuda_kernels.ts`), so a token costs `dIn`
 * floats up and `cap` (index, value) pairs down.
 *
 * Each call is synchronous on the calling thread (one batch at a time, on
 * the default stream): the device finishes a 64-token decode step in well
 * under a millisecond, shorter than handing it to another thread would
 * take. A batch above `maxRows` is split; a token with more than `cap`
 * active latents is never truncated (the batch is compacted again with a
 * larger cap, counted in `stats().recompactions`).
 *
 * @module
 */

import type { Encoder, SaeWeights, SparseLatents } from "../core/sae.ts";
import { referenceNormStats } from "../core/reference_encoder.ts";
import { checkEncodeInput } from "../core/encoder_checks.ts";
import { compactedBytes, unpackCompacted } from "./compacted.ts";
import { columnNorms, splitBound, stackedBf16 } from "./cuda_split.ts";
import { transpose } from "./matrix.ts";
import {
  type CudaDeviceReport,
  type CudaRuntime,
  cudaRuntime,
  type DevicePtr,
} from "./cuda_ffi.ts";
import { CUDA_KERNELS, cudaKernelSource, segmentsFor } from "./cuda_kernels.ts";
import { type EncodeBuffers, EncodeLaunches } from "./cuda_launch.ts";
import type { ProviderReport } from "./provider.ts";

export { CudaError, CudaUnavailableError } from "./cuda_ffi.ts";

/** An SAE or option the CUDA encoder does not take (TopK and gated SAEs, a bad `maxRows`). */
export class CudaEncoderConfigError extends TypeError {
  override name = "CudaEncoderConfigError";
}

/** Options for {@linkcode createCudaEncoder}. */
export interface CudaEncoderOptions {
  /** Largest batch one launch takes; bigger batches are split (default 4096). */
  maxRows?: number;
  /** Active latents read back per token before a batch is compacted again (default 128). */
  cap?: number;
  /**
   * `f32` (default): cuBLAS's f32 SGEMM. `bf16x3`: a split bf16 GEMM on the
   * tensor cores finds the candidates under a proven bound and each is
   * recomputed as an f32 dot product (`cuda_split.ts`): f32 values, and the
   * `f32` path's active latents but where a value lies within f32 rounding of
   * its threshold, for three bf16 GEMMs' time. `auto`: `bf16x3` for batches of at
   * least {@linkcode AUTO_SPLIT_ROWS} tokens, `f32` for smaller ones.
   */
  precision?: CudaPrecision;
}

/** The CUDA encoder's arithmetic: see {@linkcode CudaEncoderOptions.precision}. */
export type CudaPrecision = "f32" | "bf16x3" | "auto";

/** What the encoder has done, for reports and the bench. */
export interface CudaEncoderStats {
  batches: number;
  tokens: number;
  /** Batches compacted a second time because a token had more than `cap` active latents. */
  recompactions: number;
  /** `bf16x3`: latents recomputed in f32 (the candidates), over all tokens. */
  candidates: number;
  /**
   * Where `encode` spent its time, in ms over all batches: copying the input
   * up (with a normalising SAE's per-token statistics, computed on the host),
   * the kernels (waited for, a second compaction's included), copying the
   * result down, and unpacking it into sparse rows.
   */
  ms: { upload: number; kernels: number; download: number; unpack: number };
}

/** A full-encode {@linkcode Encoder} on CUDA, with a device-side timing hook. */
export interface CudaEncoder extends Encoder, ProviderReport {
  readonly provider: "cuda";
  readonly engine: "cuda-ffi";
  readonly precision: CudaPrecision;
  readonly device: CudaDeviceReport;
  stats(): CudaEncoderStats;
  /**
   * Run the input kernel, the GEMM and the compaction `repeats` times on
   * `rows` tokens already on the device (no upload, no readback) and return
   * the seconds they took: the kernels' own throughput. `stages: "gemm"`
   * stops after the GEMM (the compaction's share is the difference).
   */
  timeKernels(rows: number, repeats: number, stages?: "all" | "gemm"): number;
}

/**
 * Create a CUDA encoder for a standard or JumpReLU SAE.
 *
 * @throws {CudaEncoderConfigError} for TopK and gated SAEs and bad options
 * @throws {CudaUnavailableError} when the driver, a GPU, cuBLAS or NVRTC is missing
 * @example
 * ```ts
 * import { randomSae } from "../formats/random_sae.ts";
 * import { CudaUnavailableError } from "./cuda_ffi.ts";
 * const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
 * try {
 *   const enc = createCudaEncoder(sae);
 *   const [first] = await enc.encode(new Float32Array(16), 1);
 *   await enc.close();
 * } catch (e) {
 *   if (!(e instanceof CudaUnavailableError)) throw e; // no NVIDIA GPU here
 * }
 * ```
 */
export function createCudaEncoder(sae: SaeWeights, options: CudaEncoderOptions = {}): CudaEncoder {
  if (sae.architecture !== "standard" && sae.architecture !== "jumprelu") {
    throw new CudaEncoderConfigError(
      `${sae.source}: the CUDA encoder runs standard and JumpReLU SAEs, found ${sae.architecture}`,
    );
  }
  if (sae.architecture === "jumprelu" && sae.threshold?.length !== sae.dSae) {
    throw new CudaEncoderConfigError(`${sae.source}: JumpReLU SAE needs threshold [${sae.dSae}]`);
  }
  const maxRows = options.maxRows ?? 4096;
  if (!Number.isSafeInteger(maxRows) || maxRows < 1) {
    throw new CudaEncoderConfigError(`maxRows: expected a positive integer, found ${maxRows}`);
  }
  const precision = options.precision ?? "f32";
  if (precision !== "f32" && precision !== "bf16x3" && precision !== "auto") {
    throw new CudaEncoderConfigError(`precision: expected f32, bf16x3 or auto, found ${precision}`);
  }
  const cap = options.cap ?? 128;
  if (!Number.isSafeInteger(cap) || cap < 1) {
    throw new CudaEncoderConfigError(`cap: expected a positive integer, found ${cap}`);
  }
  return new CudaSaeEncoder(sae, cudaRuntime(), { maxRows, cap: Math.max(4, cap), precision });
}

/**
 * `auto` runs batches of at least this many tokens on the split bf16 GEMM and
 * smaller ones on the f32 GEMM (the crossover measured on an H200, docs/gpu.md).
 */
export const AUTO_SPLIT_ROWS = 256;

class CudaSaeEncoder implements CudaEncoder {
  readonly engine = "cuda-ffi" as const;
  readonly provider = "cuda" as const;
  readonly providerFallback = false;
  readonly dIn: number;
  readonly dSae: number;
  readonly precision: CudaPrecision;
  readonly device: CudaDeviceReport;
  readonly #cuda: CudaRuntime;
  readonly #sae: SaeWeights;
  readonly #maxRows: number;
  readonly #cap: number;
  readonly #owned: DevicePtr[] = [];
  readonly #buffers: EncodeBuffers;
  readonly #launches: EncodeLaunches;
  /** counts `[rows]`, then indices `[rows, cap]`, then values `[rows, cap]`: one readback. */
  readonly #out: DevicePtr;
  readonly #stats: CudaEncoderStats = {
    batches: 0,
    tokens: 0,
    recompactions: 0,
    candidates: 0,
    ms: { upload: 0, kernels: 0, download: 0, unpack: 0 },
  };
  #closed = false;

  constructor(
    sae: SaeWeights,
    cuda: CudaRuntime,
    o: { maxRows: number; cap: number; precision: CudaPrecision },
  ) {
    this.#sae = sae;
    this.#cuda = cuda;
    this.device = cuda.device;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
    this.precision = o.precision;
    this.#maxRows = o.maxRows;
    this.#cap = o.cap;
    const thr = new Float32Array(sae.dSae);
    if (sae.threshold) thr.set(sae.threshold); // standard SAEs threshold at 0: f = relu(h)
    const bdec = new Float32Array(sae.dIn);
    const subtract = sae.applyBDecToInput && (sae.kind ?? "sae") === "sae";
    if (subtract) bdec.set(sae.bDec);
    const normalize = (sae.normalize ?? "none") !== "none";
    const prep = subtract || normalize;
    const kernels = cuda.compile(cudaKernelSource(), [...CUDA_KERNELS]);
    const put = (a: ArrayBufferView) => {
      const p = this.#alloc(a.byteLength);
      cuda.upload(p, a);
      return p;
    };
    const rows = o.maxRows;
    const maxSegs = segmentsFor(1, sae.dSae).segs;
    try {
      const x = this.#alloc(rows * sae.dIn * 4);
      this.#buffers = {
        x,
        xt: prep ? this.#alloc(rows * sae.dIn * 4) : x,
        norm: this.#alloc(rows * 8),
        h: this.#alloc(rows * sae.dSae * 4),
        segCount: this.#alloc(rows * maxSegs * 4),
        bias: put(sae.bEnc),
        thr: put(thr),
        bdec: put(bdec),
        w: o.precision !== "bf16x3" ? put(sae.wEnc) : undefined,
        split: o.precision !== "f32"
          ? {
            wStacked: put(stackedBf16(sae.wEnc, sae.dIn, sae.dSae)),
            wT: put(transpose(sae.wEnc, sae.dIn, sae.dSae)),
            wNorm: put(columnNorms(sae.wEnc, sae.dIn, sae.dSae)),
            xStacked: this.#alloc(rows * 3 * sae.dIn * 2),
            xNorm: this.#alloc(rows * 4),
            segCandidates: this.#alloc(rows * maxSegs * 4),
            bound: splitBound(sae.dIn),
          }
          : undefined,
      };
      this.#out = this.#alloc(compactedBytes(rows, o.cap));
    } catch (e) {
      // out of device memory part way: nothing of this encoder stays allocated
      this.#freeAll();
      throw e;
    }
    this.#launches = new EncodeLaunches({
      cuda,
      kernels,
      buffers: this.#buffers,
      dIn: sae.dIn,
      dSae: sae.dSae,
      normalize,
      prep,
    });
  }

  #freeAll(): void {
    for (const p of this.#owned.splice(0)) {
      try {
        this.#cuda.free(p);
      } catch { /* freeing what was allocated is best effort after an error */ }
    }
  }

  #alloc(bytes: number): DevicePtr {
    const p = this.#cuda.alloc(bytes);
    this.#owned.push(p);
    return p;
  }

  /** Whether a batch of `rows` tokens runs on the split bf16 GEMM. */
  #splitFor(rows: number): boolean {
    return this.precision === "bf16x3" || (this.precision === "auto" && rows >= AUTO_SPLIT_ROWS);
  }

  stats(): CudaEncoderStats {
    return { ...this.#stats, ms: { ...this.#stats.ms } };
  }

  encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    try {
      checkEncodeInput(x, tokens, this.dIn);
      if (this.#closed) throw new CudaEncoderConfigError(`${this.#sae.source}: encoder is closed`);
      const out: SparseLatents[] = [];
      for (let r0 = 0; r0 < tokens; r0 += this.#maxRows) {
        const n = Math.min(this.#maxRows, tokens - r0);
        out.push(...this.#encodeChunk(x.subarray(r0 * this.dIn, (r0 + n) * this.dIn), n));
      }
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #encodeChunk(x: Float32Array, rows: number): SparseLatents[] {
    if (rows === 0) return [];
    const ms = this.#stats.ms;
    const t0 = performance.now();
    this.#upload(x, rows);
    const t1 = performance.now();
    const split = this.#splitFor(rows);
    this.#launches.encode(rows, { split, cap: this.#cap, out: this.#out });
    this.#cuda.synchronize();
    ms.upload += t1 - t0;
    ms.kernels += performance.now() - t1;
    let got = this.#read(rows, this.#cap, this.#out);
    if (split) this.#stats.candidates += this.#launches.candidates(rows);
    if (got.maxCount > this.#cap) {
      // Never truncate: gather once more with room for the fullest token.
      this.#stats.recompactions++;
      got = this.#recompact(rows, split, Math.ceil(got.maxCount / 32) * 32);
    }
    this.#stats.batches++;
    this.#stats.tokens += rows;
    return got.latents;
  }

  #upload(x: Float32Array, rows: number): void {
    this.#cuda.upload(this.#buffers.x, x.subarray(0, rows * this.dIn));
    if ((this.#sae.normalize ?? "none") !== "none") {
      const norm = new Float32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        const s = referenceNormStats(this.#sae, x.subarray(r * this.dIn, (r + 1) * this.dIn));
        norm[2 * r] = s.inShift;
        norm[2 * r + 1] = s.inMul;
      }
      this.#cuda.upload(this.#buffers.norm, norm);
    }
  }

  #read(rows: number, cap: number, out: DevicePtr): { latents: SparseLatents[]; maxCount: number } {
    const t0 = performance.now();
    const buf = new ArrayBuffer(compactedBytes(rows, cap));
    this.#cuda.download(new Uint8Array(buf), out);
    const t1 = performance.now();
    const got = unpackCompacted(buf, rows, cap);
    this.#stats.ms.download += t1 - t0;
    this.#stats.ms.unpack += performance.now() - t1;
    return got;
  }

  /** Compact the batch (still on the device) again, into room for `cap` per token. */
  #recompact(
    rows: number,
    split: boolean,
    cap: number,
  ): { latents: SparseLatents[]; maxCount: number } {
    const out = this.#cuda.alloc(compactedBytes(rows, cap));
    try {
      const t0 = performance.now();
      this.#launches.compact(rows, { split, cap, out }, true);
      this.#cuda.synchronize();
      this.#stats.ms.kernels += performance.now() - t0;
      return this.#read(rows, cap, out);
    } finally {
      this.#cuda.free(out);
    }
  }

  timeKernels(rows: number, repeats: number, stages: "all" | "gemm" = "all"): number {
    if (this.#closed) throw new CudaEncoderConfigError(`${this.#sae.source}: encoder is closed`);
    if (!Number.isSafeInteger(rows) || rows < 1 || rows > this.#maxRows) {
      throw new RangeError(`timeKernels: expected 1 to ${this.#maxRows} rows, found ${rows}`);
    }
    const run = {
      split: this.#splitFor(rows),
      cap: this.#cap,
      out: this.#out,
      gemmOnly: stages === "gemm",
    };
    this.#launches.encode(rows, run); // warm: cuBLAS picks its kernel on first use
    this.#cuda.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < repeats; i++) this.#launches.encode(rows, run);
    this.#cuda.synchronize();
    return (performance.now() - t0) / 1000;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#cuda.synchronize();
      for (const p of this.#owned.splice(0)) this.#cuda.free(p);
    }
    return Promise.resolve();
  }
}
