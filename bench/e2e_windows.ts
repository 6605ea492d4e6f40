/**
 * An end-to-end load row measured beside its floor: the same open-loop load
 * read by the sidecar and by a bare subscriber, in windows that alternate
 * (sidecar, floor, floor, sidecar, …), so both sides meet the same seconds of
 * a host whose speed drifts (a floor measured minutes after its row moved 3×
 * between runs of one tree).
 *
 * @module
 */
import type { CpuMark } from "./process_cpu.ts";
import { percentileOfSorted } from "./samples.ts";

/** Who reads a window's frames: the sidecar, or the floor's bare subscriber. */
export type Side = "sidecar" | "floor";

/** A stretch of one side's frames: `seconds` measured, after a settling time. */
export interface Block {
  side: Side;
  seconds: number;
}

/**
 * The blocks of a row measured for `seconds` on each side in windows of
 * `windowSeconds`: the sequence sidecar, floor, floor, sidecar repeated (so
 * neither side always comes first), with adjacent windows of one side joined.
 *
 * @example
 * ```ts
 * import { alternation } from "./e2e_windows.ts";
 * alternation(5, 1).map((b) => `${b.side} ${b.seconds}`);
 * // ["sidecar 1", "floor 2", "sidecar 2", "floor 2", "sidecar 2", "floor 1"]
 * ```
 */
export function alternation(seconds: number, windowSeconds: number): Block[] {
  if (!(seconds > 0 && windowSeconds > 0)) {
    throw new RangeError(
      `alternation: expected positive seconds, found ${seconds} and ${windowSeconds}`,
    );
  }
  const perSide = Math.max(1, Math.round(seconds / windowSeconds));
  const each = seconds / perSide;
  const pattern: Side[] = ["sidecar", "floor", "floor", "sidecar"];
  const blocks: Block[] = [];
  for (let i = 0; i < 2 * perSide; i++) {
    const side = pattern[i % 4];
    const last = blocks[blocks.length - 1];
    if (last?.side === side) last.seconds += each;
    else blocks.push({ side, seconds: each });
  }
  return blocks;
}

/** What one measured window gave. */
export interface Window {
  span: { from: CpuMark; to: CpuMark };
  tokens: number;
  seconds: number;
  /** Tokens published and not received by the deadline. */
  missing: number;
  /** Tokens the sidecar refused (counted by its telemetry) over the measured seconds. */
  dropped: number;
  /** The generator's lateness against its schedule, p99 (ms). */
  lagP99Ms: number;
  /**
   * Each frame's lateness (ms), asked for in a row of several windows only: a
   * row of one window (two minutes at half load: 300,000 frames) takes its
   * `lagP99Ms` and keeps the list out of the sidecar's process.
   */
  lagsMs?: readonly number[];
}

/**
 * One side's windows of a row, summed; the generator's lag is the p99 of
 * every frame of them (percentiles of windows do not add up), or the worst
 * window's p99 where the windows came without their frames' lags.
 *
 * @example
 * ```ts
 * import { SideTally } from "./e2e_windows.ts";
 * const mark = { at: 0, selfUs: 0, broker: null, generator: null };
 * const t = new SideTally();
 * t.add({ span: { from: mark, to: mark }, tokens: 160, seconds: 1, missing: 0, dropped: 0, lagP99Ms: 0.4 });
 * t.tokens / t.seconds; // 160 tokens/s
 * ```
 */
export class SideTally {
  readonly spans: { from: CpuMark; to: CpuMark }[] = [];
  tokens = 0;
  seconds = 0;
  missing = 0;
  dropped = 0;
  readonly #lags: number[] = [];
  #worstP99 = 0;

  add(w: Window): void {
    this.spans.push(w.span);
    this.tokens += w.tokens;
    this.seconds += w.seconds;
    this.missing += w.missing;
    this.dropped += w.dropped;
    if (w.lagsMs) { for (const v of w.lagsMs) this.#lags.push(v); }
    this.#worstP99 = Math.max(this.#worstP99, w.lagP99Ms);
  }

  /** The generator's lateness over every window's frames, p99 (ms; 0 without frames). */
  get lagP99Ms(): number {
    if (this.#lags.length === 0) return this.#worstP99;
    return percentileOfSorted(Float64Array.from(this.#lags).sort(), 99)!;
  }
}

/**
 * A row's p99 less its floor's (ms, to the µs), as the gating rows' added
 * p99 is gated less ungated; null when either is missing.
 *
 * @example
 * ```ts
 * import { overFloor } from "./e2e_windows.ts";
 * overFloor(2.5, 1.25); // 1.25
 * ```
 */
export function overFloor(p99: number | null, floorP99: number | null): number | null {
  return p99 === null || floorP99 === null ? null : Math.round((p99 - floorP99) * 1000) / 1000;
}
