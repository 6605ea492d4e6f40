/**
 * How the bench times an encoder: the timing constants every row shares,
 * one timed row ({@linkcode timeEncoder}), interleaved turns folded into the
 * best ({@linkcode bestTurn}), and the watched-encode rows.
 *
 * @module
 */
import { createOrtEncoder } from "../src/runtime/ort_encoder.ts";
import type { Encoder } from "../src/core/sae.ts";
import { Rng } from "../src/core/random.ts";
import { PICKS_BEFORE_STEADY, sizeClassOf } from "../src/runtime/path_tuner.ts";
import { encodePathOf } from "./encode_path.ts";
import { benchSae, SHAPES } from "./bench_sae.ts";
import type { BenchResult } from "./run.ts";

/**
 * Every timed row, in --quick and full runs alike: at least 10 calls and
 * WARMUP_SECONDS of warm-up, then at least 5 calls and ROW_SECONDS measured.
 * --quick runs fewer rows, never shorter versions of the same rows, so the
 * rows both runs share measure the same way.
 */
export const ROW_SECONDS = 0.5;
export const WARMUP_SECONDS = 0.2;
/**
 * An encoder that tunes its path (the int8 candidates) warms up further, until its
 * tuner has made its early looks at the slower exact path ({@linkcode PICKS_BEFORE_STEADY}
 * calls of a batch size, counted over the encoder's turns); this many seconds bound it
 * only against an encoder far slower than the bench's (the 1 GiB 4096→65536 SAE at 128
 * tokens needs about 15 s, once per pass). At 128 tokens a look runs five f32 batches of
 * 47 ms among int8's 10: in a probe the half-second turn holding the 16th batch's look
 * ran 23–28% below the turns after it, the one holding the 64th's 14–17%, in every pass
 * (docs/performance-history.md, thirty-seventh sitting). A bound of 5 s, tried first,
 * stopped the 4096→65536 warm-up inside a look and left an f32 batch in that row's first
 * turn of every pass. The looks every 256 or more batches after the early ones are the
 * tuner's running cost, and stay in the turns they fall in.
 */
export const TUNER_WARMUP_MAX_SECONDS = 30;

/**
 * Per encoder: calls per size class (the path tuner's {@linkcode sizeClassOf}), and
 * whether it ever ran the int8 candidates (its tuner's looks report `f32` while they run).
 */
const callsOf = new WeakMap<Encoder, { tunes: boolean; calls: Map<number, number> }>();

/** Whether `enc` at `b` tokens tunes its path and still has its tuner's early looks ahead. */
function beforeSteady(enc: Encoder, b: number): boolean {
  const seen = callsOf.get(enc);
  return !!seen?.tunes && (seen.calls.get(sizeClassOf(b)) ?? 0) < PICKS_BEFORE_STEADY;
}

/** Count a call of `enc` on `b` tokens that just ran, for {@linkcode beforeSteady}. */
function countCall(enc: Encoder, b: number): void {
  let seen = callsOf.get(enc);
  if (!seen) callsOf.set(enc, seen = { tunes: false, calls: new Map() });
  seen.tunes ||= encodePathOf(enc).path.startsWith("int8-candidates");
  const key = sizeClassOf(b);
  seen.calls.set(key, (seen.calls.get(key) ?? 0) + 1);
}

/**
 * encode/ rows: latentwatch and NumPy take this many turns on each shape and weight type in
 * each of the section's passes (`encode_section.ts`); watched/ rows (latentwatch alone) at
 * least this many, up to MAX_ENCODE_ROUNDS while a row is not {@linkcode settled}. Each
 * side's row is its best turn that another turn confirms ({@linkcode confirmedBest}). This
 * shared machine's other work slows one half-second window or another by up to 2×;
 * interleaved turns put both sides through the same stretches, and the best turn is what
 * each can do here.
 */
export const ENCODE_ROUNDS = 3;
/**
 * watched/ rows: after ENCODE_ROUNDS, turns go on (up to MAX_ENCODE_ROUNDS) while a row is
 * not {@linkcode settled}: a best turn that no other turn comes near may be a lucky quiet
 * window, or the one window the rest fell short of, and --quick and full runs then disagree
 * by 20–40% on a row measured the same way; a row still unsettled after them keeps its best
 * confirmed turn.
 */
export const MAX_ENCODE_ROUNDS = 6;
/** A side is settled when its second-best turn is within this fraction of its best. */
export const SETTLED_SPREAD = 0.1;

/**
 * Whether each side of a row (latentwatch's turns and, where measured, the
 * baseline's) has two turns within {@linkcode SETTLED_SPREAD} of each other
 * at the top: its best turn is then what it does here, not one window's luck.
 *
 * @example
 * ```ts
 * import { settled } from "./encode_rows.ts";
 * settled({ turns_tokens_per_s: [900, 1000, 700], baseline_turns_tokens_per_s: [500, 510] }); // true
 * settled({ turns_tokens_per_s: [400, 1000, 700] }); // false: 700 is 30% below 1000
 * ```
 */
export function settled(
  row: { turns_tokens_per_s?: number[]; baseline_turns_tokens_per_s?: (number | null)[] },
): boolean {
  const side = (turns: (number | null)[] | undefined, required: boolean): boolean => {
    const measured = (turns ?? []).filter((v): v is number => v !== null && v > 0);
    if (measured.length === 0) return !required;
    if (measured.length === 1) return false;
    const [best, second] = measured.sort((a, b) => b - a);
    return second >= best * (1 - SETTLED_SPREAD);
  };
  return side(row.turns_tokens_per_s, true) && side(row.baseline_turns_tokens_per_s, false);
}

/** Whether another turn is due after `round` turns of `rows` (always after none). */
export function anotherTurn(round: number, rows: readonly BenchResult[]): boolean {
  if (round < ENCODE_ROUNDS) return true;
  return round < MAX_ENCODE_ROUNDS && !rows.every(settled);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Time `enc` on `x` (`b` tokens) for the configured seconds: throughput and latency percentiles. */
export async function timeEncoder(
  name: string,
  enc: Encoder,
  x: Float32Array,
  b: number,
): Promise<BenchResult> {
  const warm = performance.now() + WARMUP_SECONDS * 1000;
  const tunerWarm = performance.now() + TUNER_WARMUP_MAX_SECONDS * 1000;
  // at least 10 calls: the int8-candidates encoder times both exact paths on its first
  // batches of a size (3 timed after 2 warm-up each) before it settles on the faster
  for (
    let i = 0;
    i < 10 || performance.now() < warm ||
    (beforeSteady(enc, b) && performance.now() < tunerWarm);
    i++
  ) {
    await enc.encode(x, b);
    countCall(enc, b);
  }
  const fallbacks0 = encodePathOf(enc).fallbackTokens;
  const lat: number[] = [];
  const pathCalls: Record<string, number> = {};
  const end = performance.now() + ROW_SECONDS * 1000;
  while (performance.now() < end || lat.length < 5) {
    const t0 = performance.now();
    await enc.encode(x, b);
    lat.push(performance.now() - t0); // the bookkeeping after the clock stops
    countCall(enc, b);
    const ran = encodePathOf(enc).path;
    pathCalls[ran] = (pathCalls[ran] ?? 0) + 1;
  }
  // the path of most calls: the last call may have been the tuner's look at the other path
  const path = Object.entries(pathCalls).reduce((a, v) => v[1] > a[1] ? v : a)[0];
  const total = lat.reduce((a, v) => a + v, 0);
  lat.sort((a, v) => a - v);
  return {
    name,
    tokens_per_s: (b * lat.length) / (total / 1000),
    baseline_tokens_per_s: null,
    ratio: null,
    p50_ms: percentile(lat, 50),
    p99_ms: percentile(lat, 99),
    rss_mb: Deno.memoryUsage().rss / 2 ** 20,
    path,
    path_calls: pathCalls,
    fallbacks: encodePathOf(enc).fallbackTokens - fallbacks0,
  };
}

/**
 * Which of `values` (a side's turns, tokens/s) stands for the side: the
 * fastest that another turn comes within {@linkcode SETTLED_SPREAD} of, or
 * the fastest where none does. A settled side's is its fastest; a side that
 * never settled keeps a fastest turn no other came near only when nothing
 * better is confirmed: one `--quick` turn of 13,184 tokens/s among 8,180 to
 * 11,278 (the full run's best 10,150) was one lucky window, not the row.
 *
 * @example
 * ```ts
 * import { confirmedBest } from "./encode_rows.ts";
 * confirmedBest([8180, 13184, 11278, 10714]); // 2: 10714 is within 10% of 11278, none of 13184
 * confirmedBest([900, 1000]); // 1
 * confirmedBest([500, 1000]); // 1: nothing is confirmed, the fastest stands
 * ```
 */
export function confirmedBest(values: readonly number[]): number {
  const order = values.map((_, i) => i).sort((a, b) => values[b] - values[a]);
  for (const [rank, i] of order.entries()) {
    const next = order[rank + 1];
    if (next !== undefined && values[next] >= values[i] * (1 - SETTLED_SPREAD)) return i;
  }
  return order[0] ?? -1;
}

/** Each row's turns as they were measured, for {@linkcode bestTurn} to choose from. */
const turnsOf = new WeakMap<BenchResult, BenchResult[]>();

/**
 * Fold one interleaved turn into an encode/ or watched/ row: each side keeps
 * its {@linkcode confirmedBest} turn (latentwatch's with the path that ran
 * then); fallbacks add up over all turns; `turns_tokens_per_s` and
 * `baseline_turns_tokens_per_s` keep every turn's figure.
 */
export function bestTurn(
  kept: BenchResult | undefined,
  turn: BenchResult,
  baseline: number | null,
  round: number,
): BenchResult {
  const all = [...(kept ? turnsOf.get(kept) ?? [kept] : []), turn];
  const ours = [...(kept?.turns_tokens_per_s ?? []), turn.tokens_per_s];
  const theirs = [...(kept?.baseline_turns_tokens_per_s ?? []), baseline];
  const best = all[confirmedBest(all.map((t) => t.tokens_per_s))];
  // as settled() reads them: a turn that measured nothing is not a turn
  const measured = theirs.filter((v): v is number => v !== null && v > 0);
  const row: BenchResult = {
    ...best,
    fallbacks: (kept?.fallbacks ?? 0) + (turn.fallbacks ?? 0),
    baseline_tokens_per_s: measured.length > 0 ? measured[confirmedBest(measured)] : null,
    turns: round,
    turns_tokens_per_s: ours,
    baseline_turns_tokens_per_s: theirs,
  };
  turnsOf.set(row, all);
  return row;
}

/**
 * Watched-latent encode: only the encoder columns rules read (exact for
 * JumpReLU), with 16, 64 and 256 watched latents, against the full encode of
 * the same SAE in the same run (ratio = watched / full).
 */
export async function benchWatched(
  full: BenchResult[],
  opts: { maxBatch: number; progress: (msg: string) => void },
): Promise<BenchResult[]> {
  const { progress } = opts;
  const shape = SHAPES.find((s) => s.label === "jumprelu-768x24576")!;
  const sae = benchSae(shape);
  const xAll = new Rng(3).fillGaussian(new Float32Array(opts.maxBatch * shape.dIn));
  const rng = new Rng(11);
  const out: BenchResult[] = [];
  for (const w of [16, 64, 256]) {
    const watch = new Set<number>();
    while (watch.size < w) watch.add(Math.floor(rng.uniform() * shape.dSae));
    progress(`watched encode: ${w} of ${shape.dSae} latents`);
    const enc = await createOrtEncoder(sae, { watch: Uint32Array.from(watch).sort() });
    // the watched encoder's counters: batches it computed itself, and with which kernel
    const watchedStats = enc as { smallBatches?: number; watchedKernel?: string };
    // the best of interleaved turns, as the encode rows: one 0.7 s window slowed by the
    // machine's other work made a single full-run row 2× below --quick's (w256/b128)
    const kept = new Map<number, BenchResult>();
    for (let round = 1; anotherTurn(round - 1, [...kept.values()]); round++) {
      for (const b of [1, 128]) {
        const small = watchedStats.smallBatches ?? 0;
        const turn = await timeEncoder(
          `watched/${shape.label}-w${w}/b${b}`,
          enc,
          xAll.subarray(0, b * shape.dIn),
          b,
        );
        // which kernel computed the product: the watched one, or onnxruntime past its limit
        const ranHere = (watchedStats.smallBatches ?? 0) > small;
        turn.path = ranHere ? `watched/${watchedStats.watchedKernel}` : "watched/onnxruntime";
        delete turn.path_calls; // the full encode's paths: the watched encoder has none
        kept.set(b, bestTurn(kept.get(b), turn, null, round));
      }
    }
    for (const [b, r] of kept) {
      delete r.baseline_turns_tokens_per_s; // the baseline is the full encode's row
      const base = full.find((f) => f.name === `encode/${shape.label}-f32/b${b}`);
      if (base) {
        r.baseline_tokens_per_s = base.tokens_per_s;
        r.ratio = r.tokens_per_s / base.tokens_per_s;
      }
      out.push(r);
      progress(`${r.name}: ${Math.round(r.tokens_per_s)} tokens/s`);
    }
    await enc.close();
  }
  return out;
}
