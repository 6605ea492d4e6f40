/**
 * The candidate encoder: an exact full encode in two passes. An int8
 * onnxruntime graph (`candidate_graph.ts`, VNNI on CPUs that have it) reads a
 * quarter of the f32 weight bytes and bounds every latent's pre-activation;
 * the latents whose bound does not rule them out (a few times the active
 * ones) are recomputed in f32 (`wasm_dots.ts`) and the activation applied to
 * the exact values. The result is the f32 encode's: the same active latents
 * and values but for f32 rounding (a different summation order).
 *
 * A token with more than `maxCandidates` candidates (a bound that does not
 * separate, or an SAE with very many active latents) falls back to the exact
 * dot with every latent; `fallbackTokens` counts them.
 *
 * @module
 */
import type * as ort from "onnxruntime-node";
import { canonicalWatch } from "../core/encoder_checks.ts";
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import {
  ACC_OUTPUT,
  APPROX_OUTPUT,
  buildCandidateGraph,
  type CandidateGraph,
  PREPARED_OUTPUT,
  SCALE_OUTPUT,
  TOKEN_OUTPUT,
} from "./candidate_graph.ts";
import { nativeFirstPass, type NativeKernelSet, nativeProduct } from "./candidate_native.ts";
import { ortFirstPass } from "./candidate_ort_pass.ts";
import type { NativeKernelsSetting } from "./native_library.ts";
import { CandidateSelector } from "./candidate_select.ts";
import type { NativeInt8Gemm } from "./native_kernels.ts";
import type { ProviderEncoder } from "./ort_encoder.ts";
import { encoderFeeds, openProviderSession } from "./session.ts";
import { type EncodePath, PathTuner } from "./path_tuner.ts";
import { type RowFormat, WasmDots } from "./wasm_dots.ts";
import { SumsPool } from "./sums_pool.ts";
import { transpose } from "./matrix.ts";
import { WasmScan } from "./wasm_scan.ts";

/** Options for {@linkcode createCandidateEncoder}. */
export interface CandidateEncoderOptions {
  /** onnxruntime intra-op threads (default: one per logical core). */
  intraOpThreads?: number;
  /** Let idle onnxruntime threads spin-wait (default false: the second pass needs the cores). */
  spinning?: boolean;
  /** Report only these latents (TopK: still selected among all). */
  watch?: Uint32Array;
  /** Threads of the exact recomputation: 1, or 2 (the default on 2+ cores: a worker takes half). */
  recomputeThreads?: 1 | 2;
  /** Candidates per token above which the token is computed in full (default max(1024, d_sae/8)). */
  maxCandidates?: number;
  /**
   * Prefilter the uniform test in WebAssembly SIMD, the int8 pass writing its
   * accumulations into the scan's memory (`wasm_scan.ts`; default true; the
   * same candidates either way). False: the plain TypeScript loop.
   */
  simdScan?: boolean;
  /**
   * The native CPU kernels (`native_kernels.ts`: the int8 product in AVX-512
   * VNNI, the exact dots in AVX-512 FMA): `auto` (default) where they load,
   * else onnxruntime's `MatMulInteger` and the WebAssembly dots; `require`
   * insists (an error says why they cannot load); `off` never tries. The
   * same integers and candidates either way (TopK quantizes its input per
   * token with them, per batch without), the dots up to f32 rounding.
   */
  nativeKernels?: NativeKernelsSetting;
  /** @internal TopK: slots per token of the native scan (tests make tokens overflow them). */
  nativeSlots?: number;
  /**
   * Time the int8 path against the f32 one per batch size and run the faster
   * (default true; both are exact). False: always the int8 path.
   */
  tune?: boolean;
  /**
   * Opens the f32 encoder of the same SAE (and watch) for tokens computed in
   * full (default: `createOrtEncoder` with `fullEncode: "f32"`, on first need).
   */
  fullEncoder?: () => Promise<ProviderEncoder>;
}

/** What the candidate encoder did so far. */
export interface CandidateStats {
  tokens: number;
  /** Latents recomputed exactly (fallback tokens count every latent). */
  candidates: number;
  fallbackTokens: number;
  /** Batches whose uniform test the WebAssembly SIMD scan prefiltered. */
  simdScanBatches: number;
}

/**
 * Open the candidate encoder of `sae` on the CPU.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights, x: Float32Array;
 * const enc = await createCandidateEncoder(sae);
 * const rows = await enc.encode(x, x.length / sae.dIn);
 * enc.path; // "int8-candidates"
 * enc.fallbackTokens; // tokens computed in full
 * await enc.close();
 * ```
 */
export async function createCandidateEncoder(
  sae: SaeWeights,
  opts: CandidateEncoderOptions = {},
): Promise<CandidateEncoder> {
  const { open: native, why } = await nativeProduct(sae, opts.nativeKernels ?? "auto");
  const graph = buildCandidateGraph(sae, { externalProduct: native !== null });
  const opened = await openProviderSession(graph.model, {
    provider: "cpu",
    // onnxruntime's own default ran the int8 GEMM on one of two cores here (half the speed)
    intraOpThreads: opts.intraOpThreads ?? navigator.hardwareConcurrency,
    // idle onnxruntime threads would spin through the second pass, on the cores it runs on
    spinning: opts.spinning ?? false,
  });
  const encoder = new CandidateEncoder(opened.session, sae, graph, {
    ...opts,
    native: native ? await native(graph.columns.q) : undefined,
    nativeWhy: why,
  });
  // the tuner times the f32 path too: open it now, not in the middle of a batch
  if (opts.tune !== false) await encoder.openFull();
  return encoder;
}

/** Tokens after which the share of fallbacks is judged. */
const JUDGE_TOKENS = 512;

/** The encoder {@linkcode createCandidateEncoder} opens. */
export class CandidateEncoder implements ProviderEncoder {
  readonly dIn: number;
  readonly dSae: number;
  readonly provider = "cpu" as const;
  readonly providerFallback = false;
  readonly #session: ort.InferenceSession;
  /** The native int8 product, when it loaded (else the graph computes `acc`). */
  readonly #native: NativeInt8Gemm | null;
  /** Why the native kernels do not run here, when they do not. */
  readonly #nativeWhy: string | undefined;
  /** TopK's k (0 for the other architectures). */
  readonly #topkK: number;
  readonly #columnScale: Float64Array;
  readonly #columnBias: Float32Array;
  readonly #dots: WasmDots;
  /** The SIMD uniform test (standard, JumpReLU, gated: the SAEs whose int8 pass outputs `acc`). */
  readonly #scan: WasmScan | null;
  /** The native product's sums (two batches' worth kept). */
  readonly #sumsPool = new SumsPool(2);
  readonly #select: CandidateSelector;
  readonly #stats: CandidateStats = {
    tokens: 0,
    candidates: 0,
    fallbackTokens: 0,
    simdScanBatches: 0,
  };
  readonly #openFull: () => Promise<ProviderEncoder>;
  #full: Promise<ProviderEncoder> | null = null;
  #busy: Promise<unknown> = Promise.resolve();
  /** Tokens and fallbacks since the share was last judged. */
  #recent = { tokens: 0, fallbacks: 0 };
  #f32Only = false;
  /** Times the two exact paths per batch size and picks the faster (absent: always int8). */
  readonly #tuner: PathTuner | null;
  #last: EncodePath = "int8";

  /** @internal use {@linkcode createCandidateEncoder} */
  constructor(
    session: ort.InferenceSession,
    sae: SaeWeights,
    graph: CandidateGraph,
    opts: CandidateEncoderOptions & { native?: NativeKernelSet; nativeWhy?: string },
  ) {
    this.#session = session;
    this.#native = opts.native?.gemm ?? null;
    this.#nativeWhy = opts.nativeWhy;
    this.#topkK = sae.architecture === "topk" ? sae.k! : 0;
    this.#columnScale = graph.columnScale;
    this.#columnBias = graph.columnBias;
    this.dIn = sae.dIn;
    this.dSae = sae.dSae;
    this.#dots = new WasmDots(transpose(sae.wEnc, sae.dIn, sae.dSae), sae.dSae, sae.dIn, {
      threads: (opts.recomputeThreads ?? Math.min(2, navigator.hardwareConcurrency)) >= 2 ? 2 : 1,
      // bf16 weights (most released SAEs) are held as bf16: the second pass reads half the bytes
      rowFormat: "auto",
    });
    this.#dots.useNative(opts.native?.dots ?? null);
    // the native scan reads the sums where they are: the WebAssembly one is for onnxruntime's
    this.#scan = sae.architecture === "topk" || opts.simdScan === false || this.#native
      ? null
      : new WasmScan(sae.dSae);
    // the columns' factors are the SAE's, fixed at load; each token's scale multiplies in the scan
    this.#scan?.setColumns(graph.columnScale, graph.columnBias);
    this.#select = new CandidateSelector(sae, {
      maxCandidates: opts.maxCandidates ?? Math.max(1024, sae.dSae >> 3),
      bounds: graph.bounds,
      columnScale: graph.columnScale,
      columnBias: graph.columnBias,
      watch: opts.watch ? canonicalWatch(opts.watch, sae.dSae) : undefined,
      native: opts.native?.select ?? null,
      nativeSlots: opts.nativeSlots,
    });
    this.#tuner = opts.tune === false ? null : new PathTuner();
    this.#openFull = opts.fullEncoder ?? (async () => {
      const { createOrtEncoder, fallbackEncoderOptions } = await import("./ort_encoder.ts");
      // the same fallback createOrtEncoder gives its candidate encoders (idle threads still)
      return await createOrtEncoder(
        sae,
        fallbackEncoderOptions({
          intraOpThreads: opts.intraOpThreads,
          spinning: opts.spinning,
          ...(opts.watch ? { watch: opts.watch } : {}),
        }),
      );
    });
  }

  /**
   * Which encode path ran last (the bench reports it): `int8-candidates`, or
   * `f32` when it timed faster for that batch size or once more than half of
   * the tokens fell back (the bound does not separate this SAE's latents on
   * this input).
   */
  get path(): string {
    return this.#f32Only || this.#last === "f32" ? "f32" : "int8-candidates";
  }

  /** Which kernel computes the second pass's dots: `native` (AVX-512) or `wasm`. */
  get dotsKernel(): "native" | "wasm" {
    return this.#dots.kernel;
  }

  /** Why the native kernels do not run (absent when they do): `encoder.ready` logs it. */
  get int8KernelNote(): string | undefined {
    return this.#nativeWhy; // given only where the native kernels do not run
  }

  /** Which kernel computes the int8 product: `native-vnni` or `onnxruntime`. */
  get int8Kernel(): "native-vnni" | "onnxruntime" {
    return this.#native ? "native-vnni" : "onnxruntime";
  }

  /** How the second pass holds `W_encᵀ`: `bf16` (half the bytes) when every weight is a bf16. */
  get recomputeRows(): RowFormat {
    return this.#dots.rowFormat;
  }

  /** Tokens computed in full so far. */
  get fallbackTokens(): number {
    return this.#stats.fallbackTokens;
  }

  /** A copy of the counts so far. */
  stats(): CandidateStats {
    return { ...this.#stats };
  }

  async encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    const feeds = encoderFeeds(x, tokens, this.dIn);
    if (!feeds) return [];
    if (this.#f32Only) {
      this.#stats.tokens += tokens;
      this.#stats.fallbackTokens += tokens;
      return await (await this.#fullEncoder()).encode(x, tokens);
    }
    const path = this.#tuner ? this.#tuner.pick(tokens) : "int8";
    this.#last = path;
    const t0 = performance.now();
    const rows = path === "f32"
      ? await (await this.#fullEncoder()).encode(x, tokens)
      : await this.#int8(feeds, x, tokens);
    this.#tuner?.record(tokens, path, performance.now() - t0);
    if (path === "f32") this.#stats.tokens += tokens;
    return rows;
  }

  /** The two-pass encode of one batch. */
  async #int8(
    feeds: Record<string, ort.Tensor>,
    x: Float32Array,
    tokens: number,
  ): Promise<SparseLatents[]> {
    // the int32 accumulations straight into the SIMD scan's memory, when a region is free
    const region = this.#scan?.lease(tokens) ?? null;
    // the native product's sums go to a pooled buffer (fresh pages cost their faults)
    const pooled = this.#native ? this.#sumsPool.take(tokens * this.dSae) : null;
    const giveBack = () => {
      if (region) this.#scan!.release(region);
      if (pooled) this.#sumsPool.give(pooled);
    };
    let out: ort.InferenceSession.OnnxValueMapType;
    let scanned: boolean;
    try {
      if (this.#native) {
        out = await nativeFirstPass({
          session: this.#session,
          gemm: this.#native,
          feeds,
          tokens,
          into: pooled!,
          topkK: this.#topkK,
          columnScale: this.#columnScale,
          columnBias: this.#columnBias,
        });
        scanned = false; // the native scan comes in the second pass
      } else {
        ({ out, scanned } = await ortFirstPass({
          session: this.#session,
          feeds,
          tokens,
          dSae: this.dSae,
          region,
        }));
      }
    } catch (err) {
      giveBack();
      throw err;
    }
    if (scanned) this.#stats.simdScanBatches++;
    // the second pass shares scratch memory: one batch at a time through it
    const run = this.#busy.then(() =>
      this.#select.encode({
        prepared: out[PREPARED_OUTPUT].data as Float32Array,
        ...(out[APPROX_OUTPUT]
          ? { approx: out[APPROX_OUTPUT].data as Float32Array }
          : scanned
          ? { acc: region!.acc, scan: { wasm: this.#scan!, region: region! } }
          : { acc: out[ACC_OUTPUT].data as Int32Array }),
        scale: out[SCALE_OUTPUT].data as Float32Array,
        tokenBounds: out[TOKEN_OUTPUT].data as Float32Array,
        tokens,
        dots: this.#dots,
        stats: this.#stats,
      })
    ).finally(giveBack);
    this.#busy = run.catch(() => {});
    const { rows, fallback } = await run;
    const fell: number[] = [];
    fallback.forEach((f, t) => f && fell.push(t));
    if (fell.length > 0) {
      // the tokens the bound did not separate: one f32 product for all of them
      const sub = new Float32Array(fell.length * this.dIn);
      fell.forEach((t, i) => sub.set(x.subarray(t * this.dIn, (t + 1) * this.dIn), i * this.dIn));
      const full = await (await this.#fullEncoder()).encode(sub, fell.length);
      fell.forEach((t, i) => rows[t] = full[i]);
    }
    this.#stats.tokens += tokens;
    this.#judge(tokens, fell.length);
    return rows;
  }

  #fullEncoder(): Promise<ProviderEncoder> {
    return this.#full ??= this.#openFull();
  }

  /** @internal open the f32 encoder now (tuning times it). */
  async openFull(): Promise<void> {
    await this.#fullEncoder();
  }

  /** Give up on the int8 pass when, over the last tokens, most fell back. */
  #judge(tokens: number, fallbacks: number): void {
    this.#recent.tokens += tokens;
    this.#recent.fallbacks += fallbacks;
    if (this.#recent.tokens < JUDGE_TOKENS) return;
    if (this.#recent.fallbacks * 2 > this.#recent.tokens) this.#f32Only = true;
    this.#recent = { tokens: 0, fallbacks: 0 };
  }

  async close(): Promise<void> {
    this.#dots.close();
    await this.#session.release();
    if (this.#full) await (await this.#full).close();
  }
}
