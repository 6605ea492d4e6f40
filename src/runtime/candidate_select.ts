/**
 * The second pass of the candidate encoder: each token's candidates from
 * the int8 pass (`candidate_scan.ts`), recomputed exactly (f32 dots in
 * WebAssembly or native code, `wasm_dots.ts`, in column blocks so each
 * weight row is read once per batch while it is in cache), the SAE's
 * activation applied to the exact values and the sparse rows built. Tokens
 * with too many candidates are computed over every latent (counted as
 * fallbacks).
 *
 * @module
 */
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import { decoderNorms } from "./onnx_graph.ts";
import { topKPositions, topKRows } from "./top_k.ts";
import type { WasmDots } from "./wasm_dots.ts";
import { CandidateScan, type CandidateScanOptions, type ScanInput } from "./candidate_scan.ts";

/**
 * log₂ of the columns per block when pairs are ordered for locality: every
 * token's pairs in a block run before the next block, so the block's weight
 * rows (16 × d_in: 144 KiB in f32 at 2304, half in bf16) are read from
 * memory once and stay in the core's L2 for the other tokens. The second
 * pass is bound by those reads: at batch 128 of 2304 → 16384 its dots took
 * 17.5 ms with blocks of 256 (2.25 MiB), 14.3 ms with 64 and 11.7 ms with 16.
 */
const BLOCK_SHIFT = 4;

/** Options of {@linkcode CandidateSelector}: the scan's, and which latents to report. */
export interface SelectorOptions extends CandidateScanOptions {
  /** Report only these latents (ascending, unique). */
  watch?: Uint32Array;
}

/** One batch for {@linkcode CandidateSelector.encode}: the scan's input, and for the dots: */
export interface SelectInput extends ScanInput {
  /** The prepared input, `[tokens, d_in]`. */
  prepared: Float32Array;
  dots: WasmDots;
  /** Counters to add to. */
  stats: { candidates: number; fallbackTokens: number };
}

const f32 = Math.fround;

/** Each token's latents: `cand[ends[t−1]..ends[t])`, ascending. */
interface CandidateList {
  cand: Uint32Array;
  ends: Uint32Array;
}

/**
 * Candidate scan, exact recomputation and activation for one SAE.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * import { buildCandidateGraph } from "./candidate_graph.ts";
 * declare const sae: SaeWeights;
 * const { bounds, columnScale, columnBias } = buildCandidateGraph(sae);
 * const select = new CandidateSelector(sae, { maxCandidates: 1024, bounds, columnScale, columnBias });
 * ```
 */
export class CandidateSelector {
  readonly #sae: SaeWeights;
  readonly #max: number;
  readonly #watch: Uint8Array | null;
  /** JumpReLU: max(θ, 0); gated: exp(r_mag); TopK: decoder norms (rescaling) */
  readonly #level: Float32Array | null;
  readonly #norms: Float32Array | null;
  /** Each token's candidates (`candidate_scan.ts`). */
  readonly #scanner: CandidateScan;
  #pairTok = new Uint32Array(0);
  #pairCol = new Uint32Array(0);
  #outIdx = new Uint32Array(0);
  #outVal = new Float32Array(0);

  constructor(sae: SaeWeights, opts: SelectorOptions) {
    this.#sae = sae;
    this.#max = opts.maxCandidates;
    this.#scanner = new CandidateScan(sae, opts);
    this.#watch = null;
    if (opts.watch) {
      this.#watch = new Uint8Array(sae.dSae);
      for (const i of opts.watch) this.#watch[i] = 1;
    }
    this.#level = sae.architecture === "jumprelu"
      ? Float32Array.from(sae.threshold!, (t) => Math.max(t, 0))
      : sae.architecture === "gated"
      ? Float32Array.from(sae.gated!.rMag, Math.exp)
      : null;
    this.#norms = sae.architecture === "topk" && sae.rescaleActsByDecoderNorm
      ? decoderNorms(sae)
      : null;
  }

  /**
   * The sparse latents of one batch. Tokens over the candidate cap get an
   * empty row here and are marked in `fallback`: the caller encodes them
   * in full (an f32 product is far faster than dots with every latent).
   */
  async encode(input: SelectInput): Promise<{ rows: SparseLatents[]; fallback: Uint8Array }> {
    const { tokens, dots, stats } = input;
    const { dIn } = this.#sae;
    const ends = new Uint32Array(tokens);
    const fallback = new Uint8Array(tokens);
    await this.#scanner.scan(input, ends, fallback);
    for (let t = 0; t < tokens; t++) if (fallback[t]) stats.fallbackTokens++;
    const s = dots.prepare(tokens, 0);
    for (let t = 0; t < tokens; t++) {
      s.inputs.set(input.prepared.subarray(t * dIn, (t + 1) * dIn), t * dots.stride);
      if (dots.stride > dIn) s.inputs.fill(0, t * dots.stride + dIn, (t + 1) * dots.stride);
    }
    const list = { cand: this.#scanner.cand, ends };
    if (this.#sae.architecture === "topk") {
      return { rows: await this.#topkRounds(list, dots, stats, fallback), fallback };
    }
    const total = ends[tokens - 1] ?? 0;
    stats.candidates += total;
    const results = await this.#run(list, total, dots);
    return { rows: this.#activate(tokens, ends, total, results), fallback };
  }

  /** Dots of every pair of `list` (`total` of them); the results' view. */
  async #run(list: CandidateList, total: number, dots: WasmDots): Promise<Float32Array> {
    const s = dots.prepare(list.ends.length, total);
    this.#pairs(list, total, dots, s.pairs);
    await dots.run(total);
    return s.results;
  }

  /**
   * Pairs (input row, weight row) in column blocks, in one counting sort
   * (linear in pairs and blocks, so 131k-wide SAEs pay nothing for small
   * blocks): within a block, tokens ascend and each token's latents ascend.
   * `#pairTok`/`#pairCol` say which. Token t's latents are
   * `cand[ends[t−1]..ends[t])` (ascending).
   */
  #pairs(
    list: CandidateList,
    total: number,
    dots: WasmDots,
    out: Uint32Array,
  ): void {
    const { cand, ends } = list;
    const tokens = ends.length;
    if (this.#pairTok.length < total) {
      this.#pairTok = new Uint32Array(Math.max(total, this.#pairTok.length * 2));
      this.#pairCol = new Uint32Array(this.#pairTok.length);
    }
    const tok = this.#pairTok, col = this.#pairCol;
    const blocks = (this.#sae.dSae >>> BLOCK_SHIFT) + 1;
    if (this.#blockNext.length < blocks + 1) this.#blockNext = new Uint32Array(blocks + 1);
    const next = this.#blockNext.fill(0, 0, blocks + 1);
    for (let p = 0; p < total; p++) next[(cand[p] >>> BLOCK_SHIFT) + 1]++;
    for (let b = 0; b < blocks; b++) next[b + 1] += next[b];
    let p = 0;
    for (let t = 0; t < tokens; t++) {
      const x = dots.inputAddress(t);
      for (const end = ends[t]; p < end; p++) {
        const j = cand[p];
        const c = next[j >>> BLOCK_SHIFT]++;
        tok[c] = t, col[c] = j, out[2 * c] = x, out[2 * c + 1] = dots.rowAddress(j);
      }
    }
  }

  /** Where each block's next pair goes (`#pairs`), kept across batches. */
  #blockNext = new Uint32Array(0);

  /** Standard, JumpReLU, gated: the activation on each pair's exact dot; one sparse row per token. */
  #activate(
    tokens: number,
    ends: Uint32Array,
    total: number,
    dots: Float32Array,
  ): SparseLatents[] {
    const sae = this.#sae;
    // each token's slots: as many as its pairs, from `base[t]`
    const base = new Uint32Array(tokens + 1);
    base.set(ends, 1);
    this.#reserveSlots(total);
    const idx = this.#outIdx, val = this.#outVal;
    const cursor = base.slice(0, tokens);
    const tok = this.#pairTok, col = this.#pairCol;
    const arch = sae.architecture;
    const bias = arch === "gated" ? sae.gated!.bGate : sae.bEnc;
    const level = this.#level;
    const bMag = sae.gated?.bMag;
    for (let c = 0; c < total; c++) {
      const j = col[c];
      const h = f32(dots[c] + bias[j]);
      let v: number;
      if (arch === "jumprelu") v = h > level![j] ? h : 0;
      else if (arch === "standard") v = h > 0 ? h : 0;
      else v = h > 0 ? Math.max(0, f32(f32(dots[c] * level![j]) + bMag![j])) : 0; // gated
      if (v === 0) continue;
      const t = tok[c];
      idx[cursor[t]] = j;
      val[cursor[t]++] = v;
    }
    return this.#rows(tokens, base, cursor);
  }

  /** Rows from each token's slots (already ascending by latent). */
  #rows(tokens: number, base: Uint32Array, cursor: Uint32Array): SparseLatents[] {
    const watch = this.#watch;
    let n = 0;
    for (let t = 0; t < tokens; t++) n += cursor[t] - base[t];
    const indices = new Uint32Array(n), values = new Float32Array(n);
    const out = new Array<SparseLatents>(tokens);
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      const start = pos;
      for (let p = base[t]; p < cursor[t]; p++) {
        if (watch && !watch[this.#outIdx[p]]) continue;
        indices[pos] = this.#outIdx[p];
        values[pos++] = this.#outVal[p];
      }
      out[t] = { indices: indices.subarray(start, pos), values: values.subarray(start, pos) };
    }
    return out;
  }

  /**
   * TopK in two rounds of exact recomputation. Round 1: each token's k
   * candidates with the highest upper bounds; the least of their exact
   * scores, V, is a lower bound of the true k-th score. Round 2: the other
   * candidates whose upper bound reaches V (no other can be in the top k).
   * Then the k best exact scores (ties: lower latent), relu'd, by latent.
   */
  async #topkRounds(
    list: CandidateList,
    dots: WasmDots,
    stats: { candidates: number; fallbackTokens: number },
    fallback: Uint8Array,
  ): Promise<SparseLatents[]> {
    const { cand, ends } = list;
    const tokens = ends.length;
    const k = this.#sae.k!;
    const startOf = (t: number) => (t === 0 ? 0 : ends[t - 1]);
    // slots per token: every candidate it may compute
    const base = new Uint32Array(tokens + 1);
    base.set(ends, 1);
    this.#reserveSlots(base[tokens]);
    const cursor = base.slice(0, tokens);
    const picked = new Uint8Array(ends[tokens - 1] ?? 0);
    // round 1
    const r1 = new Uint32Array(tokens * k), ends1 = new Uint32Array(tokens);
    const best = new Uint32Array(k);
    let n1 = 0;
    for (let t = 0; t < tokens; t++) {
      const upper = this.#scanner.upper;
      const n = topKPositions(upper, cand, startOf(t), ends[t], k, best);
      const chosen = best.subarray(0, n).sort(); // ascending positions: ascending latents
      for (const p of chosen) {
        picked[p] = 1;
        r1[n1++] = cand[p];
      }
      ends1[t] = n1;
    }
    this.#scores(await this.#run({ cand: r1, ends: ends1 }, n1, dots), n1, cursor);
    stats.candidates += n1;
    // round 2: V = the least exact score of round 1 (only tokens that had more than k)
    const r2 = new Uint32Array(ends[tokens - 1] ?? 0), ends2 = new Uint32Array(tokens);
    let n2 = 0;
    for (let t = 0; t < tokens; t++) {
      if (ends[t] - startOf(t) > k) {
        let least = Infinity;
        for (let p = base[t]; p < cursor[t]; p++) least = Math.min(least, this.#outVal[p]);
        const start = n2;
        for (let p = startOf(t); p < ends[t]; p++) {
          if (!picked[p] && this.#scanner.upper[p] >= least) r2[n2++] = cand[p];
        }
        if (n2 - start > this.#max) {
          // the bound does not separate: the caller encodes this token in full
          n2 = start;
          fallback[t] = 1;
          stats.fallbackTokens++;
        }
      }
      ends2[t] = n2;
    }
    if (n2 > 0) {
      this.#scores(await this.#run({ cand: r2, ends: ends2 }, n2, dots), n2, cursor);
      stats.candidates += n2;
    }
    return topKRows({
      scores: this.#outVal,
      latents: this.#outIdx,
      base,
      cursor,
      k,
      watch: this.#watch,
    });
  }

  #reserveSlots(n: number): void {
    if (this.#outIdx.length >= n) return;
    this.#outIdx = new Uint32Array(Math.max(n, this.#outIdx.length * 2));
    this.#outVal = new Float32Array(this.#outIdx.length);
  }

  /** TopK scores of the pairs just run, appended to their tokens' slots. */
  #scores(dots: Float32Array, total: number, cursor: Uint32Array): void {
    const bias = this.#sae.bEnc, norms = this.#norms;
    const tok = this.#pairTok, col = this.#pairCol, idx = this.#outIdx, val = this.#outVal;
    for (let c = 0; c < total; c++) {
      const j = col[c];
      const h = f32(dots[c] + bias[j]);
      const t = tok[c];
      idx[cursor[t]] = j;
      val[cursor[t]++] = norms ? f32(h * norms[j]) : h;
    }
  }
}
