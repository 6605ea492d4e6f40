/**
 * One CUDA encode as a sequence of launches on the default stream: the
 * input kernel, the GEMM (cuBLAS f32, or the split bf16 GEMM of the
 * `bf16x3` precision), then activation and gathering (`cuda_kernels.ts`):
 * in two phases over segments of each token for small batches, in one pass
 * per token for large ones.
 * The encoder (`cuda_encoder.ts`) owns the buffers and reads the result.
 *
 * @module
 */
import type { CudaRuntime, DevicePtr } from "./cuda_ffi.ts";
import { CUDA_BLOCK, segmentsFor } from "./cuda_kernels.ts";

/** Device buffers of the `bf16x3` precision. */
export interface SplitBuffers {
  /** `[w_hi; w_lo; w_hi]`, `[3·dIn, dSae]` bf16. */
  wStacked: DevicePtr;
  /** `W_encᵀ` `[dSae, dIn]` f32, one latent's weights contiguous for its recomputation. */
  wT: DevicePtr;
  wNorm: DevicePtr;
  /** `[x_hi, x_hi, x_lo]` per token, `[rows, 3·dIn]` bf16. */
  xStacked: DevicePtr;
  xNorm: DevicePtr;
  /** Candidates per (token, segment). */
  segCandidates: DevicePtr;
  bound: number;
}

/** The device buffers an encode runs on. */
export interface EncodeBuffers {
  /** The input as sent, `[rows, dIn]`. */
  x: DevicePtr;
  /** `x̃`, the GEMM's input (`x` itself when the SAE neither normalises nor subtracts `b_dec`). */
  xt: DevicePtr;
  /** Per-token (shift, scale) when the SAE normalises its input. */
  norm: DevicePtr;
  /** Pre-activations, then activations, `[rows, dSae]`. */
  h: DevicePtr;
  /** Active latents per (token, segment), from activation for gathering. */
  segCount: DevicePtr;
  bias: DevicePtr;
  thr: DevicePtr;
  bdec: DevicePtr;
  /** `W_enc` f32, for the f32 GEMM. */
  w?: DevicePtr;
  split?: SplitBuffers;
}

const u64 = (v: bigint) => new BigUint64Array([v]);
const i32 = (v: number) => new Int32Array([v]);

/** `items` threads (`perItem` each), in blocks of {@linkcode CUDA_BLOCK}. */
function grid(items: number, perItem: number): { grid: number; block: number } {
  return { grid: Math.ceil((items * perItem) / CUDA_BLOCK), block: CUDA_BLOCK };
}

/** The launches of one encoder, over its buffers. */
export class EncodeLaunches {
  readonly #cuda: CudaRuntime;
  readonly #k: Map<string, Deno.PointerObject>;
  readonly #b: EncodeBuffers;
  readonly #dIn: number;
  readonly #dSae: number;
  readonly #normalize: boolean;
  readonly #prep: boolean;

  constructor(o: {
    cuda: CudaRuntime;
    kernels: Map<string, Deno.PointerObject>;
    buffers: EncodeBuffers;
    dIn: number;
    dSae: number;
    /** The SAE normalises its input (the input kernel reads `norm`). */
    normalize: boolean;
    /** The input kernel runs at all (normalisation or `b_dec`). */
    prep: boolean;
  }) {
    this.#cuda = o.cuda;
    this.#k = o.kernels;
    this.#b = o.buffers;
    this.#dIn = o.dIn;
    this.#dSae = o.dSae;
    this.#normalize = o.normalize;
    this.#prep = o.prep;
  }

  /**
   * Queue the input kernel, the GEMM (`split`: the bf16x3 one) and
   * activation for `rows` tokens in `x`, then gather into `out` with room
   * for `cap` per token (`gemmOnly`: stop after the GEMM, for timing).
   */
  encode(
    rows: number,
    o: { split: boolean; cap: number; out: DevicePtr; gemmOnly?: boolean },
  ): void {
    const cuda = this.#cuda, b = this.#b, dIn = this.#dIn, dSae = this.#dSae;
    if (this.#prep) {
      const n = rows * dIn;
      cuda.launch(this.#k.get("lw_prep")!, grid(n, 1), [
        u64(b.x),
        u64(b.xt),
        u64(b.bdec),
        u64(b.norm),
        u64(BigInt(n)),
        i32(dIn),
        i32(this.#normalize ? 1 : 0),
      ]);
    }
    if (o.split) {
      const s = b.split!;
      cuda.launch(this.#k.get("lw_split")!, grid(rows, 32), [
        u64(b.xt),
        u64(s.xStacked),
        u64(s.xNorm),
        i32(rows),
        i32(dIn),
      ]);
      cuda.gemmBf16RowMajor({ a: s.xStacked, b: s.wStacked, c: b.h, n: rows, k: 3 * dIn, m: dSae });
    } else {
      cuda.sgemmRowMajor({ a: b.xt, b: b.w!, c: b.h, n: rows, k: dIn, m: dSae });
    }
    if (!o.gemmOnly) this.compact(rows, o);
  }

  /**
   * Activation and gathering into `out` with room for `cap` per token, for
   * the batch's pre-activations in `h` (the first time) or activations (a
   * second time, with more room, after the first found a token past `cap`).
   */
  compact(rows: number, o: { split: boolean; cap: number; out: DevicePtr }, again = false): void {
    if (segmentsFor(rows, this.#dSae).segs === 1) {
      // one pass from the pre-activations, which it leaves as they are: the same again
      this.#fused(rows, o);
      return;
    }
    if (!again) this.#activate(rows, o.split);
    this.#gather(rows, o.cap, o.out);
  }

  /**
   * The arguments every activating kernel starts with: `h`, `b_enc`, `θ`,
   * (`bf16x3`: `W_encᵀ`, `x̃`, `‖x̃‖`, `‖w_j‖`, the bound), `rows`, `dSae`
   * (`bf16x3`: `dIn`).
   */
  #activationArgs(rows: number, split: boolean): ArrayBufferView[] {
    const b = this.#b;
    const head = [u64(b.h), u64(b.bias), u64(b.thr)];
    if (!split) return [...head, i32(rows), i32(this.#dSae)];
    const s = b.split!;
    return [
      ...head,
      u64(s.wT),
      u64(b.xt),
      u64(s.xNorm),
      u64(s.wNorm),
      new Float32Array([s.bound]),
      i32(rows),
      i32(this.#dSae),
      i32(this.#dIn),
    ];
  }

  /** One token per warp, activation and gathering in one pass (`segs` = 1). */
  #fused(rows: number, o: { split: boolean; cap: number; out: DevicePtr }): void {
    const idx = o.out + BigInt(rows * 4);
    this.#cuda.launch(
      this.#k.get(o.split ? "lw_exact_compact" : "lw_compact")!,
      grid(rows, 32),
      [
        ...this.#activationArgs(rows, o.split),
        i32(o.cap),
        u64(o.out),
        u64(idx),
        u64(idx + BigInt(rows * o.cap * 4)),
        ...(o.split ? [u64(this.#b.split!.segCandidates)] : []),
      ],
    );
  }

  /** Activate `h` in place and count each segment's active latents (and candidates). */
  #activate(rows: number, split: boolean): void {
    const { segs, segLen } = segmentsFor(rows, this.#dSae);
    this.#cuda.launch(
      this.#k.get(split ? "lw_exact_activate" : "lw_activate")!,
      grid(rows * segs, 32),
      [
        ...this.#activationArgs(rows, split),
        i32(segLen),
        i32(segs),
        u64(this.#b.segCount),
        ...(split ? [u64(this.#b.split!.segCandidates)] : []),
      ],
    );
  }

  /** Each token's active latents (in `h`), ascending, into `out` with room for `cap`. */
  #gather(rows: number, cap: number, out: DevicePtr): void {
    const { segs, segLen } = segmentsFor(rows, this.#dSae);
    const idx = out + BigInt(rows * 4);
    this.#cuda.launch(this.#k.get("lw_gather")!, grid(rows * segs, 32), [
      u64(this.#b.h),
      i32(rows),
      i32(this.#dSae),
      i32(segLen),
      i32(segs),
      u64(this.#b.segCount),
      i32(cap),
      u64(out),
      u64(idx),
      u64(idx + BigInt(rows * cap * 4)),
    ]);
  }

  /** The candidates of the last `bf16x3` batch of `rows` tokens (waits for it). */
  candidates(rows: number): number {
    const c = new Int32Array(rows * segmentsFor(rows, this.#dSae).segs);
    this.#cuda.download(c, this.#b.split!.segCandidates);
    let n = 0;
    for (let i = 0; i < c.length; i++) n += c[i];
    return n;
  }
}
