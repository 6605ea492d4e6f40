/**
 * Latent families: the latents whose decoder directions carry one concept,
 * and the tokens where a concept's latent is silent while others carry it
 * (feature absorption). A general latent ("starts with E") may stop firing
 * where a more specific one ("elephant") has absorbed it; the specific
 * latent's decoder then points partly along the general concept, so the
 * family of a latent is found by decoder cosine. Pure.
 *
 * @module
 */
import type { SparseLatents } from "./sae.ts";

/** A latent of a family: its index and the cosine of its decoder row with the concept. */
export interface FamilyMember {
  index: number;
  cosine: number;
}

/**
 * Row `latent` of a row-major `[rows, width]` matrix, as a view (no copy).
 *
 * @example
 * ```ts
 * matrixRow(new Float32Array([1, 2, 3, 4]), 2, 1); // Float32Array [3, 4]
 * ```
 */
export function matrixRow(m: Float32Array, width: number, row: number): Float32Array {
  return m.subarray(row * width, (row + 1) * width);
}

/**
 * `v / ‖v‖₂` in f64; throws a RangeError for a zero or non-finite vector.
 *
 * @example
 * ```ts
 * unitVector(new Float32Array([3, 4])); // Float64Array [0.6, 0.8]
 * ```
 */
export function unitVector(v: ArrayLike<number>): Float64Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const n = Math.sqrt(s);
  if (!(n > 0) || !Number.isFinite(n)) {
    throw new RangeError(`expected a direction of nonzero finite norm, found norm ${n}`);
  }
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] / n;
  return out;
}

/**
 * Cosine of every row of a row-major `[rows, width]` decoder with
 * `direction`, row by row in f64: the only allocation is the `[rows]`
 * result (256 KiB for 65 536 latents), whatever the width. A zero row has
 * cosine 0.
 *
 * @example
 * ```ts
 * // rows (1, 0), (1, 1), (0, -2) against (1, 0)
 * decoderCosines(new Float32Array([1, 0, 1, 1, 0, -2]), 2, new Float32Array([1, 0]));
 * // Float32Array [1, 0.7071…, 0]
 * ```
 */
export function decoderCosines(
  wDec: Float32Array,
  width: number,
  direction: ArrayLike<number>,
): Float32Array {
  if (direction.length !== width) {
    throw new RangeError(
      `expected a concept direction of width ${width} (the decoder's), found ${direction.length}`,
    );
  }
  const u = unitVector(direction);
  const rows = Math.floor(wDec.length / width);
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    let sq = 0;
    const at = r * width;
    for (let j = 0; j < width; j++) {
      const x = wDec[at + j];
      dot += x * u[j];
      sq += x * x;
    }
    out[r] = sq > 0 ? dot / Math.sqrt(sq) : 0;
  }
  return out;
}

/** Options of {@linkcode familyMembers}. */
export interface FamilyMembersOptions {
  /** Keep latents whose cosine is at least this. */
  minCosine: number;
  /** At most this many, highest cosine first. */
  top?: number;
}

/**
 * The latents whose cosine is at least `minCosine`, highest first (ties: lower index first).
 *
 * @example
 * ```ts
 * familyMembers(new Float32Array([1, 0.2, 0.6]), { minCosine: 0.5 });
 * // [{ index: 0, cosine: 1 }, { index: 2, cosine: 0.6000000238418579 }]
 * ```
 */
export function familyMembers(
  cosines: ArrayLike<number>,
  opts: FamilyMembersOptions,
): FamilyMember[] {
  const out: FamilyMember[] = [];
  for (let i = 0; i < cosines.length; i++) {
    if (cosines[i] >= opts.minCosine) out.push({ index: i, cosine: cosines[i] });
  }
  out.sort((a, b) => b.cosine - a.cosine || a.index - b.index);
  return opts.top !== undefined ? out.slice(0, opts.top) : out;
}

/** How a family's members combine on one token. */
export type FamilyCombine = "sum" | "max";

/**
 * A family's value on one token: `combine` over members `m` of
 * `activation_m × weight_m` (the weight is the member's decoder cosine with
 * the concept: the concept magnitude the member carries). Members inactive
 * on the token read 0.
 *
 * @example
 * ```ts
 * const row = { indices: new Uint32Array([2, 5]), values: new Float32Array([3, 4]) };
 * familyValue(row, { members: [2, 5, 9], weights: [1, 0.5, 0.7], combine: "sum" }); // 5
 * familyValue(row, { members: [2, 5, 9], weights: [1, 0.5, 0.7], combine: "max" }); // 3
 * ```
 */
export function familyValue(
  row: SparseLatents,
  family: { members: readonly number[]; weights: readonly number[]; combine: FamilyCombine },
): number {
  let acc = 0;
  for (let k = 0; k < row.indices.length; k++) {
    const m = family.members.indexOf(row.indices[k]);
    if (m < 0) continue;
    const v = row.values[k] * family.weights[m];
    acc = family.combine === "sum" ? acc + v : Math.max(acc, v);
  }
  return acc;
}

/** One absorption candidate: a latent firing where the concept's latent is silent. */
export interface AbsorptionCandidate extends FamilyMember {
  /** Tokens (of the silent high-projection ones) where it fires. */
  tokens: number;
  /** `tokens` over all silent high-projection tokens. */
  share: number;
}

/** What {@linkcode AbsorptionTally} found. */
export interface AbsorptionReport {
  /** Tokens whose projection on the concept is above the threshold. */
  high: number;
  /** Of those, tokens where the concept's latent is silent. */
  silent: number;
  /** Latents with positive decoder cosine firing on silent tokens, by share. */
  candidates: AbsorptionCandidate[];
}

/**
 * Counts, over tokens whose projection on a concept is high, those where the
 * concept's own latent is silent and which latents with a decoder pointing
 * along the concept (cosine > 0) fire there instead.
 *
 * @example
 * ```ts
 * const tally = new AbsorptionTally({ latent: 0, cosines: new Float32Array([1, 0.6, -0.2]) });
 * tally.add({ indices: new Uint32Array([1, 2]), values: new Float32Array([2, 1]) }); // silent
 * tally.add({ indices: new Uint32Array([0]), values: new Float32Array([3]) }); // fires
 * tally.report().candidates; // [{ index: 1, cosine: 0.6…, tokens: 1, share: 1 }]
 * ```
 */
export class AbsorptionTally {
  readonly #latent: number;
  readonly #cosines: ArrayLike<number>;
  readonly #counts = new Map<number, number>();
  #high = 0;
  #silent = 0;

  /** `latent`: the concept's latent (-1 when the concept is a probe, never silent by index); `cosines`: every latent's. */
  constructor(opts: { latent: number; cosines: ArrayLike<number> }) {
    this.#latent = opts.latent;
    this.#cosines = opts.cosines;
  }

  /** One high-projection token's latents (as the full encoder gives them). */
  add(row: SparseLatents): void {
    this.#high++;
    let fires = false;
    for (let k = 0; k < row.indices.length; k++) {
      if (row.indices[k] === this.#latent && row.values[k] > 0) fires = true;
    }
    if (fires) return;
    this.#silent++;
    for (let k = 0; k < row.indices.length; k++) {
      const i = row.indices[k];
      if (row.values[k] > 0 && this.#cosines[i] > 0) {
        this.#counts.set(i, (this.#counts.get(i) ?? 0) + 1);
      }
    }
  }

  /** The counts so far, candidates by share (ties: higher cosine, then lower index). */
  report(top?: number): AbsorptionReport {
    const candidates = [...this.#counts].map(([index, tokens]) => ({
      index,
      cosine: this.#cosines[index],
      tokens,
      share: tokens / this.#silent,
    })).sort((a, b) => b.tokens - a.tokens || b.cosine - a.cosine || a.index - b.index);
    return {
      high: this.#high,
      silent: this.#silent,
      candidates: top !== undefined ? candidates.slice(0, top) : candidates,
    };
  }
}

/**
 * The `q` quantile (0..1) of `values` by the nearest-rank rule: the smallest
 * value with at least `q·n` values at or below it. NaN for no values.
 *
 * @example
 * ```ts
 * quantile([5, 1, 3, 2, 4], 0.8); // 4
 * ```
 */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}
