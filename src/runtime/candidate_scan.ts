/**
 * The candidate encoder's scan (second pass, first step): each token's
 * latents that can be active, from the int8 pass's sums or TopK's scores,
 * with an upper bound of each one's (scaled) pre-activation. The uniform
 * test per token, then each passing column's own bound, in f64
 * (`candidate_graph.ts` derives both); in TypeScript, with the WebAssembly
 * SIMD prefilter (`wasm_scan.ts`), or in native code (`lw_select`,
 * `native_kernels.ts`) with the same arithmetic, so the same candidates.
 *
 * @module
 */
import type { SaeWeights } from "../core/sae.ts";
import type { ColumnBounds } from "./candidate_graph.ts";
import type { NativeSelect } from "./native_kernels.ts";
import { type AccRegion, scanSlack, type WasmScan } from "./wasm_scan.ts";

/** Options of {@linkcode CandidateScan}. */
export interface CandidateScanOptions {
  /** Candidates per token above which the token is computed over every latent. */
  maxCandidates: number;
  /** The per-column bound factors (`candidate_graph.ts`). */
  bounds: ColumnBounds;
  /** See `CandidateGraph.columnScale` and `columnBias`. */
  columnScale: Float64Array;
  columnBias: Float32Array;
  /** The scan in native code (the same candidates). */
  native?: NativeSelect | null;
  /** @internal TopK: the native scan's slots per token (default max(maxCandidates, d_sae/4)). */
  nativeSlots?: number;
}

/** One batch's first-pass outputs, as the scan reads them. */
export interface ScanInput {
  /** TopK: `[tokens, d_sae]`, the approximate scores. */
  approx?: Float32Array;
  /** Other SAEs: `[tokens, d_sae]`, the int32 sums; `a = acc·columnScale·scale + columnBias`. */
  acc?: Int32Array;
  /** When `acc` lies in `scan`'s memory: the SIMD prefilter. */
  scan?: { wasm: WasmScan; region: AccRegion };
  /** The input's quantization scale: one per token, or one for the batch. */
  scale: Float32Array;
  /** `[tokens, 5]`: ‖x̂‖, ‖e‖, ‖xp‖, the uniform bound, the cut. */
  tokenBounds: Float32Array;
  tokens: number;
}

/**
 * Each token's candidates, into {@linkcode CandidateScan.cand} (ascending
 * per token) and their upper bounds into {@linkcode CandidateScan.upper}.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * import { buildCandidateGraph } from "./candidate_graph.ts";
 * declare const sae: SaeWeights;
 * const { bounds, columnScale, columnBias } = buildCandidateGraph(sae);
 * const scan = new CandidateScan(sae, { maxCandidates: 1024, bounds, columnScale, columnBias });
 * ```
 */
export class CandidateScan {
  readonly #sae: SaeWeights;
  readonly #max: number;
  readonly #bounds: ColumnBounds;
  readonly #columnScale: Float64Array;
  readonly #columnBias: Float32Array;
  /** `max_j |columnBias_j|`, for the SIMD scan's slack. */
  readonly #maxAbsBias: number;
  #cand = new Uint32Array(0);
  /** Per candidate: an upper bound of its (scaled) pre-activation (TopK ranks by it). */
  #upper = new Float32Array(0);
  /** The native scan (absent: the loops here). */
  readonly #native: NativeSelect | null;
  readonly #nativeSlots: number;
  /** The native scan's per-token slots, kept across batches. */
  #slotCand = new Uint32Array(0);
  #slotUpper = new Float32Array(0);

  constructor(sae: SaeWeights, opts: CandidateScanOptions) {
    this.#sae = sae;
    this.#max = opts.maxCandidates;
    this.#bounds = opts.bounds;
    this.#columnScale = opts.columnScale;
    this.#columnBias = opts.columnBias;
    this.#maxAbsBias = opts.columnBias.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    this.#native = opts.native ?? null;
    this.#nativeSlots = opts.nativeSlots ?? Math.max(opts.maxCandidates, sae.dSae >> 2);
  }

  /** The last batch's candidates: token t's are `cand[ends[t−1]..ends[t])`. */
  get cand(): Uint32Array {
    return this.#cand;
  }

  /** Their upper bounds, at the same positions. */
  get upper(): Float32Array {
    return this.#upper;
  }

  /**
   * Scan one batch: `ends[t]` where token t's candidates end; `fallback[t]`
   * set for a token with more than `maxCandidates` (not TopK: it judges its
   * second round).
   */
  async scan(input: ScanInput, ends: Uint32Array, fallback: Uint8Array): Promise<void> {
    if (this.#native) await this.#scanNative(input, ends, fallback, this.#native);
    else this.#scanHere(input, ends, fallback);
  }

  /**
   * Candidates of each token into `#cand` (ends per token); `fallback` marks
   * fallbacks. `a_j > cut` passes the token's uniform bound; the column's
   * own bound (`≤` it) decides: `a_j − cut − bound + bound_j > 0` (with
   * slack for the f32 rounding of `a` and `cut`).
   */
  #scanHere(input: ScanInput, ends: Uint32Array, fallback: Uint8Array): void {
    const topk = this.#sae.architecture === "topk";
    let pos = 0;
    for (let t = 0; t < input.tokens; t++) {
      const start = pos;
      pos = this.#scanToken(input, t, pos);
      // TopK judges its second round instead (most of a wide band is ruled out by round 1)
      if (!topk && pos - start > this.#max) {
        fallback[t] = 1;
        pos = start;
      }
      ends[t] = pos;
    }
  }

  /** Token `t`'s candidates into `#cand` from `pos`; the next free slot. */
  #scanToken(input: ScanInput, t: number, pos: number): number {
    const { tokenBounds, tokens } = input;
    const dSae = this.#sae.dSae;
    const approx = input.approx;
    // a_j = acc_j·columnScale_j·x_s(t) + columnBias_j, the token's scale applied last
    const cs = this.#columnScale, cb = this.#columnBias;
    const perToken = input.scale.length >= tokens;
    this.#reserveCandidates(pos, pos + dSae);
    const tb = 5 * t;
    const cut = tokenBounds[tb + 4];
    const base = t * dSae;
    // the uniform test a_j > cut over every column, one compare per column in a tight loop
    // (few pass; this loop is most of the scan); each that passes meets its own bound
    if (approx) {
      const a = approx.subarray(base, base + dSae);
      for (let j = 0; j < dSae; j++) {
        if (a[j] > cut) pos = this.#admit(j, a[j], pos, tokenBounds, tb);
      }
    } else if (input.scan) {
      // the f32 SIMD test with a lowered cut finds a superset; the f64 test decides, as below
      const a = input.acc!.subarray(base, base + dSae);
      const st = input.scale[perToken ? t : 0];
      const low = cut - scanSlack(cut, this.#maxAbsBias);
      const hits = input.scan.wasm.row(input.scan.region, t, low, st);
      for (let h = 0; h < hits.length; h++) {
        const j = hits[h];
        const v = a[j] * cs[j] * st + cb[j];
        if (v > cut) pos = this.#admit(j, v, pos, tokenBounds, tb);
      }
    } else {
      const a = input.acc!.subarray(base, base + dSae);
      const st = input.scale[perToken ? t : 0];
      for (let j = 0; j < dSae; j++) {
        const v = a[j] * cs[j] * st + cb[j];
        if (v > cut) pos = this.#admit(j, v, pos, tokenBounds, tb);
      }
    }
    return pos;
  }

  /**
   * the loops of `#scanHere` in native code (`lw_select`: the same
   * arithmetic, so the same candidates), each token's kept latents copied
   * into `#cand`. A token with more than its slots falls back (TopK: is
   * scanned again alone, with room for all of them).
   */
  async #scanNative(
    input: ScanInput,
    ends: Uint32Array,
    fallback: Uint8Array,
    native: NativeSelect,
  ): Promise<void> {
    const { tokens } = input;
    const topk = this.#sae.architecture === "topk";
    // TopK keeps every first-round candidate (up to a sixth of the latents on the bench's)
    const cap = topk ? this.#nativeSlots : this.#max;
    if (this.#slotCand.length < tokens * cap) {
      this.#slotCand = new Uint32Array(tokens * cap);
      this.#slotUpper = new Float32Array(tokens * cap);
    }
    const job = {
      values: input.approx ?? input.acc!,
      tokens,
      n: this.#sae.dSae,
      columnScale: this.#columnScale,
      columnBias: this.#columnBias,
      scale: input.scale,
      tokenBounds: input.tokenBounds,
      bounds: this.#bounds,
    };
    const counts = new Int32Array(tokens);
    await native.run({ ...job, cap, cand: this.#slotCand, upper: this.#slotUpper, counts });
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      const kept = counts[t];
      this.#reserveCandidates(pos, pos + kept);
      if (kept <= cap) {
        this.#cand.set(this.#slotCand.subarray(t * cap, t * cap + kept), pos);
        this.#upper.set(this.#slotUpper.subarray(t * cap, t * cap + kept), pos);
        pos += kept;
      } else if (!topk) fallback[t] = 1;
      else {
        // this token alone, straight into #cand and #upper (the count is known now)
        const one = { ...job, tokens: t + 1, from: t, cap: kept, counts: new Int32Array(1) };
        await native.run({
          ...one,
          cand: this.#cand.subarray(pos, pos + kept),
          upper: this.#upper.subarray(pos, pos + kept),
        });
        pos += kept;
      }
      ends[t] = pos;
    }
  }

  /**
   * Column `j` passed token `tb / 5`'s uniform test with score `v`; its own bound (`≤` the
   * uniform one) decides: `v − cut − bound + own_j > −slack` (slack: the f32 rounding of `v`
   * and `cut`). Kept at `pos` (with an upper bound of its pre-activation); the next free slot.
   */
  #admit(j: number, v: number, pos: number, tokenBounds: Float32Array, tb: number): number {
    const { hat, err, x } = this.#bounds;
    const nHat = tokenBounds[tb], nErr = tokenBounds[tb + 1], nX = tokenBounds[tb + 2];
    const bound = tokenBounds[tb + 3], cut = tokenBounds[tb + 4];
    const own = nHat * hat[j] + nErr * err[j] + nX * x[j];
    const slack = 2 ** -20 * (Math.abs(v) + Math.abs(cut) + bound + 1e-30);
    if (v - cut - bound + own + slack > 0) {
      this.#upper[pos] = v + own + slack;
      this.#cand[pos++] = j;
    }
    return pos;
  }

  /** Room for `need` candidates, keeping the first `kept`. */
  #reserveCandidates(kept: number, need: number): void {
    if (this.#cand.length >= need) return;
    const grown = new Uint32Array(Math.max(need, this.#cand.length * 2));
    grown.set(this.#cand.subarray(0, kept));
    this.#cand = grown;
    const up = new Float32Array(grown.length);
    up.set(this.#upper.subarray(0, kept));
    this.#upper = up;
  }
}
