/**
 * The per-latent index of a compiled set: for each encoder, which rules'
 * tests read each latent, built once from the rules and looked up by the
 * engine for every active latent of every token (its hot path).
 *
 * @module
 */
import type { CompiledRule, SignalInfo } from "./compiled.ts";

/**
 * Rules watching one encoder, indexed by latent. Sized by the latents the
 * rules read, never by the encoder's width:
 *
 * - entries (`rule`, `test`) sorted by latent, rule order kept within one;
 *   the entries of `watched[g]` are `groups[g]..groups[g + 1]`;
 * - a filter: `filter[latent & filterMask]` is 0 for most latents no rule
 *   reads (at most one byte in 8 is set), so an active latent no rule
 *   watches costs one load, about what a dense `[d_sae + 1]` array cost;
 * - an open-addressing table from latent to group, for what passes the
 *   filter: start at `(Math.imul(latent, INDEX_HASH) >> shift) & mask`,
 *   step by one (`& mask`) until `slotKey` holds the latent (its group is
 *   `slotGroup`) or {@linkcode INDEX_EMPTY} (no rule reads it). At most
 *   half full.
 */
export interface EncoderIndex {
  readonly kind: "sae" | "probe";
  /**
   * When the largest watched latent is below {@linkcode DENSE_INDEX_LATENTS}:
   * `[maxWatched + 2]` CSR offsets by latent (entries of latent `l <
   * length - 1` are `offsets[l]..offsets[l + 1]`), the fastest lookup, at
   * most 4 MiB whatever `d_sae` is. Otherwise null, and the filter and
   * table below are used.
   */
  readonly offsets: Uint32Array | null;
  /** Sorted latents (scores) any test reads. */
  readonly watched: Uint32Array;
  /** `[watched.length + 1]`: CSR offsets of each watched latent's entries. */
  readonly groups: Uint32Array;
  /** Per entry: the rule's index in `rules`. */
  readonly rule: Uint32Array;
  /** Per entry: the test's index in that rule's `tests`. */
  readonly test: Uint32Array;
  /** Per entry: what the latent's value is multiplied by (1; a family member's decoder cosine). */
  readonly weight: Float64Array;
  /** Hash table: the latent in each slot, or {@linkcode INDEX_EMPTY}. */
  readonly slotKey: Int32Array;
  /** Hash table: the group (index into `watched`) of each slot's latent. */
  readonly slotGroup: Uint32Array;
  /** `slotKey.length - 1` (a power of two less one). */
  readonly mask: number;
  /** `32 - log2(slotKey.length)`. */
  readonly shift: number;
  /** 1 where some watched latent `l` has `l & filterMask` there (at least 4096 bytes, ≤ 1/8 set). */
  readonly filter: Uint8Array;
  /** `filter.length - 1`. */
  readonly filterMask: number;
}

/** Watched latents below this get a dense offsets array (4 MiB at most). */
export const DENSE_INDEX_LATENTS = 2 ** 20;

/**
 * An empty slot of {@linkcode EncoderIndex.slotKey}. Latent indices are
 * below 2^31 (`latentIndex`), so the table holds them as int32: small
 * integers in the engine's hot loop, never doubles.
 */
export const INDEX_EMPTY = -1;
/** The multiplier of the {@linkcode EncoderIndex} hash (Fibonacci hashing, as an int32). */
export const INDEX_HASH = -1640531535; // 0x9e3779b1

/**
 * The entries of `latent` in `idx` (`[from, to)` into `rule`/`test`), empty
 * when no rule reads it. The policy engine inlines the same lookup.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compiled.ts";
 * declare const set: CompiledPolicySet;
 * const idx = set.index.get("res12")!;
 * const [from, to] = indexEntries(idx, 4123);
 * for (let e = from; e < to; e++) console.log(set.rules[idx.rule[e]].id, idx.test[e]);
 * ```
 */
export function indexEntries(idx: EncoderIndex, latent: number): [number, number] {
  const { offsets, slotKey, mask } = idx;
  if (offsets) {
    return latent + 1 < offsets.length ? [offsets[latent], offsets[latent + 1]] : [0, 0];
  }
  if (idx.filter[latent & idx.filterMask] === 0) return [0, 0];
  for (let s = (Math.imul(latent, INDEX_HASH) >> idx.shift) & mask;; s = (s + 1) & mask) {
    const key = slotKey[s];
    if (key === latent) {
      const g = idx.slotGroup[s];
      return [idx.groups[g], idx.groups[g + 1]];
    }
    if (key === INDEX_EMPTY) return [0, 0];
  }
}

export function buildIndex(
  rules: readonly CompiledRule[],
  signals: ReadonlyMap<string, SignalInfo>,
): Map<string, EncoderIndex> {
  const refs = new Map<string, [latent: number, rule: number, test: number, weight: number][]>();
  for (const r of rules) {
    r.tests.forEach((t, i) => {
      let list = refs.get(t.encoder);
      if (!list) refs.set(t.encoder, list = []);
      // a family test reads every member, each weighted by its decoder cosine
      if (t.family) {
        t.family.members.forEach((m, k) => list.push([m, r.index, i, t.family!.weights[k]]));
      } else list.push([t.index, r.index, i, 1]);
    });
  }
  const out = new Map<string, EncoderIndex>();
  for (const [encoder, list] of refs) {
    const info = signals.get(encoder)!;
    // by latent, keeping rule order within a latent: O(refs log refs), whatever dSae is
    const order = list.map((_, i) => i).sort((a, b) => list[a][0] - list[b][0] || a - b);
    const rule = new Uint32Array(list.length);
    const test = new Uint32Array(list.length);
    const weight = new Float64Array(list.length);
    const watchedList: number[] = [];
    const groupList: number[] = [];
    order.forEach((j, at) => {
      const [l, r, t, w] = list[j];
      weight[at] = w;
      if (watchedList[watchedList.length - 1] !== l) {
        watchedList.push(l);
        groupList.push(at);
      }
      rule[at] = r;
      test[at] = t;
    });
    groupList.push(list.length);
    const watched = Uint32Array.from(watchedList);
    let bits = 2;
    while (1 << bits < 2 * watched.length) bits++;
    const slotKey = new Int32Array(1 << bits).fill(INDEX_EMPTY);
    const slotGroup = new Uint32Array(1 << bits);
    const mask = (1 << bits) - 1;
    const shift = 32 - bits;
    let filterBits = 12;
    while (1 << filterBits < 8 * watched.length) filterBits++;
    const filter = new Uint8Array(1 << filterBits);
    const filterMask = (1 << filterBits) - 1;
    watched.forEach((l, g) => {
      filter[l & filterMask] = 1;
      let s = (Math.imul(l, INDEX_HASH) >> shift) & mask;
      while (slotKey[s] !== INDEX_EMPTY) s = (s + 1) & mask;
      slotKey[s] = l;
      slotGroup[s] = g;
    });
    const top = watched.length > 0 ? watched[watched.length - 1] : -1;
    let offsets: Uint32Array | null = null;
    if (top < DENSE_INDEX_LATENTS) {
      offsets = new Uint32Array(top + 2);
      watched.forEach((l, g) => offsets![l + 1] = groupList[g + 1] - groupList[g]);
      for (let i = 0; i <= top; i++) offsets[i + 1] += offsets[i];
    }
    out.set(encoder, {
      kind: info.kind,
      offsets,
      watched,
      groups: Uint32Array.from(groupList),
      rule,
      test,
      weight,
      slotKey,
      slotGroup,
      mask,
      shift,
      filter,
      filterMask,
    });
  }
  return out;
}
