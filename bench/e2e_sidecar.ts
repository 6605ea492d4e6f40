/**
 * What the end-to-end bench (`e2e.ts`) records of the sidecar, which runs in
 * its own process: each measured frame's latency, published → encoded and
 * evaluated, split at the sidecar's door (published → received, received →
 * evaluated), written by the monitor's `onEncoded` hook; the tokens encoded
 * so far and when the last batch was; and the peak RSS of the phase running
 * now. The floor's bare subscriber keeps the same of its frames
 * (`e2e_floor.ts`).
 *
 * @module
 */
import { percentileOfSorted, Samples } from "./samples.ts";
import type { PairLog } from "./e2e_paired.ts";

/**
 * Frames of the longest row: two minutes at half of 150,000 tokens/s, in
 * frames of 16; each list has room for them without growing (see samples.ts).
 */
const SAMPLES_CAPACITY = (120 * 75_000) / 16;

/**
 * This process's resident set size (MB): the sidecar's, as the generator
 * runs in a process of its own.
 *
 * @example
 * ```ts
 * import { rssMb } from "./e2e_sidecar.ts";
 * rssMb() > 0; // true
 * ```
 */
export const rssMb = (): number => Deno.memoryUsage().rss / 2 ** 20;

/**
 * The sidecar's side of the bench, as its phases run: the monitor's
 * `onEncoded` hook counts every frame's tokens and keeps the latencies of the
 * frames measured (not a window's settling time); a phase clears the
 * latencies when it starts measuring.
 *
 * @example
 * ```ts
 * import { SidecarSamples } from "./e2e_sidecar.ts";
 * const sidecar = new SidecarSamples();
 * // in onEncoded, for each frame: sidecar.encoded += f.tokens; if (sidecar.measuring) …
 * sidecar.latencies.push(2.5);
 * sidecar.latencies.sorted(); // Float64Array [2.5]
 * ```
 */
export class SidecarSamples {
  /** Frame published (the generator's clock) → encoded and evaluated (ours), ms. */
  readonly latencies = new Samples(SAMPLES_CAPACITY);
  /** The first half of the latency, split at the sidecar's door: published → received, ms. */
  readonly toSidecar = new Samples(SAMPLES_CAPACITY);
  /** The second half: received by the sidecar's subscription → encoded and evaluated, ms. */
  readonly inSidecar = new Samples(SAMPLES_CAPACITY);
  /** Frames measured without an arrival time: the split then covers fewer frames. */
  splitMissing = 0;
  /** Tokens encoded so far, measured or not. */
  encoded = 0;
  /** When the last batch was encoded and evaluated (`performance.now()`). */
  lastEncodedAt = 0;
  /** Whose frames are being measured now (not an open-loop window's settling time). */
  measuring = true;
  /** Peak RSS of the phase running now (MB), sampled every 200 ms. */
  phasePeak = 0;
  /**
   * In a paired row, each measured frame's publish time and when it was
   * evaluated (host ms), to match with the bare subscriber's (`e2e_paired.ts`).
   */
  paired: PairLog | null = null;
}

/**
 * p50 and p99 of the two halves of a frame's latency (unsorted samples, ms).
 *
 * @example
 * ```ts
 * import { latencySplit } from "./e2e_sidecar.ts";
 * import { Samples } from "./samples.ts";
 * const to = new Samples(2), into = new Samples(2);
 * to.push(0.5);
 * into.push(1.5);
 * latencySplit(to, into).in_sidecar_p99_ms; // 1.5
 * ```
 */
export function latencySplit(toSidecar: Samples, inSidecar: Samples) {
  const to = toSidecar.sorted(), into = inSidecar.sorted();
  return {
    to_sidecar_p50_ms: percentileOfSorted(to, 50),
    to_sidecar_p99_ms: percentileOfSorted(to, 99),
    in_sidecar_p50_ms: percentileOfSorted(into, 50),
    in_sidecar_p99_ms: percentileOfSorted(into, 99),
  };
}
