/**
 * The second pass of the candidate encoder: read each token's candidates
 * off the int8 pass's `margin`, recompute them exactly (f32 dots in
 * WebAssembly, in column blocks so each weight row is read once per batch
 * while it is in cache), apply the SAE's activation to the exact values and
 * build the sparse rows. Tokens with too many candidates are computed over
 * every latent (counted as fallbacks).
 *
 * @module
 */
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import { decoderNorms } from "./onnx_graph.ts";
import type { ColumnBounds } from "./candidate_graph.ts";
import type { WasmDots } from "./wasm_dots.ts";

/** Columns per block when pairs are ordered for locality. */
const BLOCK = 1024;

/** Options of {@linkcode CandidateSelector}. */
export interface SelectorOptions {
  /** Candidates per token above which the token is computed over every latent. */
  maxCandidates: number;
  /** Report only these latents (ascending, unique). */
  watch?: Uint32Array;
  /** The per-column bound factors (`candidate_graph.ts`): a tighter test than the margin's. */
  bounds: ColumnBounds;
}

/** One batch for {@linkcode CandidateSelector.encode}. */
export interface SelectInput {
  /** The prepared input, `[tokens, d_in]`. */
  prepared: Float32Array;
  /** `[tokens, d_sae]`: the int8 pass's `a` (`candidate_graph.ts`). */
  margin: Float32Array;
  /** `[tokens, 5]`: ‖x̂‖, ‖e‖, ‖xp‖, the uniform bound, the TopK level (`TOKEN_OUTPUT`). */
  tokenBounds: Float32Array;
  tokens: number;
  dots: WasmDots;
  /** Counters to add to. */
  stats: { candidates: number; fallbackTokens: number };
}

const f32 = Math.fround;

/**
 * Candidate scan, exact recomputation and activation for one SAE.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const select = new CandidateSelector(sae, { maxCandidates: 1024 });
 * ```
 */
export class CandidateSelector {
  readonly #sae: SaeWeights;
  readonly #max: number;
  readonly #watch: Uint8Array | null;
  /** JumpReLU: max(θ, 0); gated: exp(r_mag); TopK: decoder norms (rescaling) */
  readonly #level: Float32Array | null;
  readonly #norms: Float32Array | null;
  readonly #bounds: ColumnBounds;
  #cand = new Uint32Array(0);
  #pairTok = new Uint32Array(0);
  #pairCol = new Uint32Array(0);
  #outIdx = new Uint32Array(0);
  #outVal = new Float32Array(0);

  constructor(sae: SaeWeights, opts: SelectorOptions) {
    this.#sae = sae;
    this.#max = opts.maxCandidates;
    this.#bounds = opts.bounds;
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

  /** The sparse latents of one batch. */
  async encode(input: SelectInput): Promise<SparseLatents[]> {
    const { tokens, dots, stats } = input;
    const { dIn, dSae } = this.#sae;
    const ends = new Uint32Array(tokens);
    const full = new Uint8Array(tokens);
    this.#scan(input, ends, full);
    let total = 0;
    for (let t = 0; t < tokens; t++) {
      const n = full[t] ? dSae : ends[t] - (t === 0 ? 0 : ends[t - 1]);
      total += n;
      if (full[t]) stats.fallbackTokens++;
    }
    stats.candidates += total;
    const s = dots.prepare(tokens, total);
    for (let t = 0; t < tokens; t++) {
      s.inputs.set(input.prepared.subarray(t * dIn, (t + 1) * dIn), t * dots.stride);
      if (dots.stride > dIn) s.inputs.fill(0, t * dots.stride + dIn, (t + 1) * dots.stride);
    }
    this.#pairs(tokens, ends, full, total, dots, s.pairs);
    await dots.run(total);
    return this.#activate(tokens, ends, full, total, s.results);
  }

  /**
   * Candidates of each token into `#cand` (ends per token); `full` marks
   * fallbacks. `a_j > cut` passes the token's uniform bound; the column's
   * own bound (`≤` it) decides: `a_j − cut − bound + bound_j > 0` (with
   * slack for the f32 rounding of `a` and `cut`).
   */
  #scan(input: SelectInput, ends: Uint32Array, full: Uint8Array): number {
    const { margin: a, tokenBounds, tokens } = input;
    const dSae = this.#sae.dSae;
    const { hat, err, x } = this.#bounds;
    let pos = 0;
    for (let t = 0; t < tokens; t++) {
      if (this.#cand.length < pos + dSae) {
        const grown = new Uint32Array(Math.max(pos + dSae, this.#cand.length * 2));
        grown.set(this.#cand.subarray(0, pos));
        this.#cand = grown;
      }
      const cand = this.#cand;
      const tb = 5 * t;
      const nHat = tokenBounds[tb], nErr = tokenBounds[tb + 1], nX = tokenBounds[tb + 2];
      const bound = tokenBounds[tb + 3], cut = tokenBounds[tb + 4];
      const start = pos;
      const base = t * dSae;
      const end = base + dSae;
      const end4 = base + (dSae & ~3);
      let i = base;
      for (; i < end; i += 4) {
        if (i < end4 && !(a[i] > cut || a[i + 1] > cut || a[i + 2] > cut || a[i + 3] > cut)) {
          continue;
        }
        for (let k = i, e = Math.min(i + 4, end); k < e; k++) {
          const v = a[k];
          if (!(v > cut)) continue;
          const j = k - base;
          // a_j − cut − bound + own_j > −slack (slack: f32 rounding of a and cut)
          const own = nHat * hat[j] + nErr * err[j] + nX * x[j];
          const slack = 2 ** -20 * (Math.abs(v) + Math.abs(cut) + bound + 1e-30);
          if (v - cut - bound + own + slack > 0) cand[pos++] = j;
        }
      }
      if (pos - start > this.#max) {
        full[t] = 1;
        pos = start;
      }
      ends[t] = pos;
    }
    return pos;
  }

  /** Pairs (input row, weight row) in column blocks; `#pairTok`/`#pairCol` say which. */
  #pairs(
    tokens: number,
    ends: Uint32Array,
    full: Uint8Array,
    total: number,
    dots: WasmDots,
    out: Uint32Array,
  ): void {
    if (this.#pairTok.length < total) {
      this.#pairTok = new Uint32Array(Math.max(total, this.#pairTok.length * 2));
      this.#pairCol = new Uint32Array(this.#pairTok.length);
    }
    const tok = this.#pairTok, col = this.#pairCol, cand = this.#cand;
    const dSae = this.#sae.dSae;
    const next = new Uint32Array(tokens);
    for (let t = 1; t < tokens; t++) next[t] = ends[t - 1];
    let c = 0;
    for (let b0 = 0; b0 < dSae; b0 += BLOCK) {
      const b1 = Math.min(dSae, b0 + BLOCK);
      for (let t = 0; t < tokens; t++) {
        const x = dots.inputAddress(t);
        if (full[t]) {
          for (let j = b0; j < b1; j++) {
            tok[c] = t, col[c] = j, out[2 * c] = x, out[2 * c + 1] = dots.rowAddress(j), c++;
          }
          continue;
        }
        let p = next[t];
        const end = ends[t];
        for (; p < end && cand[p] < b1; p++) {
          const j = cand[p];
          tok[c] = t, col[c] = j, out[2 * c] = x, out[2 * c + 1] = dots.rowAddress(j), c++;
        }
        next[t] = p;
      }
    }
  }

  /** Apply the activation to each pair's exact dot; one sparse row per token. */
  #activate(
    tokens: number,
    ends: Uint32Array,
    full: Uint8Array,
    total: number,
    dots: Float32Array,
  ): SparseLatents[] {
    const sae = this.#sae;
    const dSae = sae.dSae;
    // each token's slots: as many as its pairs, from `base[t]`
    const base = new Uint32Array(tokens + 1);
    for (let t = 0; t < tokens; t++) {
      base[t + 1] = base[t] + (full[t] ? dSae : ends[t] - (t === 0 ? 0 : ends[t - 1]));
    }
    if (this.#outIdx.length < total) {
      this.#outIdx = new Uint32Array(Math.max(total, this.#outIdx.length * 2));
      this.#outVal = new Float32Array(this.#outIdx.length);
    }
    const idx = this.#outIdx, val = this.#outVal;
    const cursor = base.slice(0, tokens);
    const tok = this.#pairTok, col = this.#pairCol;
    const arch = sae.architecture;
    const bias = arch === "gated" ? sae.gated!.bGate : sae.bEnc;
    const level = this.#level, norms = this.#norms;
    const bMag = sae.gated?.bMag;
    for (let c = 0; c < total; c++) {
      const j = col[c];
      const h = f32(dots[c] + bias[j]);
      let v: number;
      if (arch === "jumprelu") v = h > level![j] ? h : 0;
      else if (arch === "standard") v = h > 0 ? h : 0;
      else if (arch === "gated") {
        v = h > 0 ? Math.max(0, f32(f32(dots[c] * level![j]) + bMag![j])) : 0;
      } else v = norms ? f32(h * norms[j]) : h; // TopK score, selected below
      if (v === 0 && arch !== "topk") continue;
      const t = tok[c];
      idx[cursor[t]] = j;
      val[cursor[t]++] = v;
    }
    return arch === "topk" ? this.#topk(tokens, base, cursor) : this.#rows(tokens, base, cursor);
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

  /** TopK: each token's k best scores (ties: lower latent first), relu'd, by latent. */
  #topk(tokens: number, base: Uint32Array, cursor: Uint32Array): SparseLatents[] {
    const k = this.#sae.k!;
    const idx = this.#outIdx, val = this.#outVal, watch = this.#watch;
    const out = new Array<SparseLatents>(tokens);
    for (let t = 0; t < tokens; t++) {
      const order = Array.from({ length: cursor[t] - base[t] }, (_, i) => base[t] + i);
      order.sort((a, b) => val[b] - val[a] || idx[a] - idx[b]);
      const chosen = order.slice(0, k).filter((p) => val[p] > 0 && (!watch || watch[idx[p]]));
      chosen.sort((a, b) => idx[a] - idx[b]);
      out[t] = {
        indices: Uint32Array.from(chosen, (p) => idx[p]),
        values: Float32Array.from(chosen, (p) => val[p]),
      };
    }
    return out;
  }
}
