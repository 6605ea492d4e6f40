/**
 * A full SAE encode on an NVIDIA GPU through CUDA, reached with Deno's FFI
 * (`cuda_ffi.ts`), for standard (ReLU) and JumpReLU SAEs: cuBLAS's f32 SGEMM
 * with TF32 forbidden (exact f32 arithmetic), then one kernel that adds the
 * bias, applies the activation and compacts each token's active latents in
 * index order on the device, so a token costs `dIn` floats up and `cap`
 * (index, value) pairs down.
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
import { checkEncodeInput, referenceNormStats } from "../core/reference_encoder.ts";
import { compactedBytes, unpackCompacted } from "./compacted.ts";
import {
  type CudaDeviceReport,
  type CudaRuntime,
  cudaRuntime,
  type DevicePtr,
} from "./cuda_ffi.ts";
import {
  COMPACT_ROWS_PER_BLOCK,
  CUDA_BLOCK,
  CUDA_KERNELS,
  cudaKernelSource,
} from "./cuda_kernels.ts";

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
}

/** What the encoder has done, for reports and the bench. */
export interface CudaEncoderStats {
  batches: number;
  tokens: number;
  /** Batches compacted a second time because a token had more than `cap` active latents. */
  recompactions: number;
}

/** A full-encode {@linkcode Encoder} on CUDA, with a device-side timing hook. */
export interface CudaEncoder extends Encoder {
  readonly engine: "cuda-ffi";
  readonly device: CudaDeviceReport;
  stats(): CudaEncoderStats;
  /**
   * Run the input kernel, the GEMM and the compaction `repeats` times on
   * `rows` tokens already on the device (no upload, no readback) and return
   * the seconds they took: the kernels' own throughput.
   */
  timeKernels(rows: number, repeats: number): number;
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
  return new CudaSaeEncoder(sae, cudaRuntime(), maxRows, Math.max(4, options.cap ?? 128));
}

const u64 = (v: bigint) => new BigUint64Array([v]);
const i32 = (v: number) => new Int32Array([v]);

class CudaSaeEncoder implements CudaEncoder {
  readonly engine = "cuda-ffi" as const;
  readonly provider = "cuda" as const;
  readonly providerFallback = false;
  readonly dIn: number;
  readonly dSae: number;
  readonly device: CudaDeviceReport;
  readonly #cuda: CudaRuntime;
  readonly #sae: SaeWeights;
  readonly #maxRows: number;
  readonly #cap: number;
  readonly #kernels: Map<string, Deno.PointerObject>;
  readonly #owned: DevicePtr[] = [];
  readonly #w: DevicePtr;
  readonly #bias: DevicePtr;
  readonly #thr: DevicePtr;
  readonly #bdec: DevicePtr;
  readonly #prepNeeded: boolean;
  readonly #x: DevicePtr;
  readonly #norm: DevicePtr;
  readonly #h: DevicePtr;
  /** counts `[rows]`, then indices `[rows, cap]`, then values `[rows, cap]`: one readback. */
  readonly #out: DevicePtr;
  readonly #stats: CudaEncoderStats = { batches: 0, tokens: 0, recompactions: 0 };
  #closed = false;

  constructor(sae: SaeWeights, cuda: CudaRuntime, maxRows: number, cap: number) {
    this.#sae = sae;
    this.#cuda = cuda;
    this.device = cuda.device;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
    this.#maxRows = maxRows;
    this.#cap = cap;
    this.#kernels = cuda.compile(cudaKernelSource(), [...CUDA_KERNELS]);
    const thr = new Float32Array(sae.dSae);
    if (sae.threshold) thr.set(sae.threshold); // standard SAEs threshold at 0: f = relu(h)
    const bdec = new Float32Array(sae.dIn);
    const subtract = sae.applyBDecToInput && (sae.kind ?? "sae") === "sae";
    if (subtract) bdec.set(sae.bDec);
    this.#prepNeeded = subtract || (sae.normalize ?? "none") !== "none";
    const put = (a: Float32Array) => {
      const p = this.#alloc(a.byteLength);
      cuda.upload(p, a);
      return p;
    };
    this.#w = put(sae.wEnc);
    this.#bias = put(sae.bEnc);
    this.#thr = put(thr);
    this.#bdec = put(bdec);
    this.#x = this.#alloc(maxRows * sae.dIn * 4);
    this.#norm = this.#alloc(maxRows * 8);
    this.#h = this.#alloc(maxRows * sae.dSae * 4);
    this.#out = this.#alloc(compactedBytes(maxRows, cap));
  }

  #alloc(bytes: number): DevicePtr {
    const p = this.#cuda.alloc(bytes);
    this.#owned.push(p);
    return p;
  }

  stats(): CudaEncoderStats {
    return { ...this.#stats };
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
    this.#upload(x, rows);
    this.#kernelsOn(rows);
    let got = this.#read(rows, this.#cap, this.#out);
    if (got.maxCount > this.#cap) {
      this.#stats.recompactions++;
      got = this.#recompact(rows, Math.ceil(got.maxCount / 32) * 32);
    }
    this.#stats.batches++;
    this.#stats.tokens += rows;
    return got.latents;
  }

  #upload(x: Float32Array, rows: number): void {
    this.#cuda.upload(this.#x, x.subarray(0, rows * this.dIn));
    if ((this.#sae.normalize ?? "none") !== "none") {
      const norm = new Float32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        const s = referenceNormStats(this.#sae, x.subarray(r * this.dIn, (r + 1) * this.dIn));
        norm[2 * r] = s.inShift;
        norm[2 * r + 1] = s.inMul;
      }
      this.#cuda.upload(this.#norm, norm);
    }
  }

  /** Input kernel, GEMM and compaction on `rows` tokens in `#x`, queued on the default stream. */
  #kernelsOn(rows: number): void {
    const cuda = this.#cuda;
    if (this.#prepNeeded) {
      const n = rows * this.dIn;
      cuda.launch(this.#kernels.get("lw_prep")!, {
        grid: Math.ceil(n / CUDA_BLOCK),
        block: CUDA_BLOCK,
      }, [
        u64(this.#x),
        u64(this.#bdec),
        u64(this.#norm),
        u64(BigInt(n)),
        i32(this.dIn),
        i32((this.#sae.normalize ?? "none") !== "none" ? 1 : 0),
      ]);
    }
    cuda.sgemmRowMajor({ a: this.#x, b: this.#w, c: this.#h, n: rows, k: this.dIn, m: this.dSae });
    this.#compact(rows, this.#cap, this.#out);
  }

  #compact(rows: number, cap: number, out: DevicePtr): void {
    const counts = out;
    const idx = out + BigInt(rows * 4);
    const val = idx + BigInt(rows * cap * 4);
    this.#cuda.launch(
      this.#kernels.get("lw_compact")!,
      { grid: Math.ceil(rows / COMPACT_ROWS_PER_BLOCK), block: CUDA_BLOCK },
      [
        u64(this.#h),
        u64(this.#bias),
        u64(this.#thr),
        i32(rows),
        i32(this.dSae),
        i32(cap),
        u64(counts),
        u64(idx),
        u64(val),
      ],
    );
  }

  #read(rows: number, cap: number, out: DevicePtr): { latents: SparseLatents[]; maxCount: number } {
    const buf = new ArrayBuffer(compactedBytes(rows, cap));
    this.#cuda.download(new Uint8Array(buf), out);
    return unpackCompacted(buf, rows, cap);
  }

  /** Compact the batch's pre-activations (still in `#h`) again, into room for `cap` per token. */
  #recompact(rows: number, cap: number): { latents: SparseLatents[]; maxCount: number } {
    const out = this.#cuda.alloc(compactedBytes(rows, cap));
    try {
      this.#compact(rows, cap, out);
      return this.#read(rows, cap, out);
    } finally {
      this.#cuda.free(out);
    }
  }

  timeKernels(rows: number, repeats: number): number {
    if (rows > this.#maxRows) {
      throw new RangeError(`timeKernels: ${rows} rows exceed maxRows ${this.#maxRows}`);
    }
    this.#kernelsOn(rows); // warm: cuBLAS picks its kernel on first use
    this.#cuda.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < repeats; i++) this.#kernelsOn(rows);
    this.#cuda.synchronize();
    return (performance.now() - t0) / 1000;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#cuda.synchronize();
      for (const p of this.#owned) this.#cuda.free(p);
    }
    return Promise.resolve();
  }
}
