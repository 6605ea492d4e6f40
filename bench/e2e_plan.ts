/**
 * What `bench/e2e.ts` runs: the phases of one serve bench, their tokens and
 * seconds, the same in `--quick` and a full run for every row they share.
 *
 * @module
 */

/**
 * Closed-loop saturation turns, run back to back; the row reports their median.
 * One turn is about two seconds, and on a shared 2-core host one turn in a few
 * measured half of its neighbours (45,753 tokens/s four minutes after 84,109 on
 * the same tree): the open-loop rows are shares of this figure, so a turn that
 * the host slowed would set every load below what the sidecar sustains.
 */
export const SATURATION_TURNS = 3;

/** Seconds each open-loop phase runs at its rate before it is measured. */
export const SETTLE_SECONDS = 1;

/** Seconds a load row's window (and its floor's) runs before they alternate (`e2e_windows.ts`). */
export const WINDOW_SECONDS = 1;

/** Seconds a window after the first runs at its rate before it is measured. */
export const SWITCH_SETTLE_SECONDS = 0.25;

/** Phases of one serve bench; durations in seconds. */
export interface ServePlan {
  saturationTokens: number;
  /** Closed-loop turns of `saturationTokens` each; the row reports their median. */
  saturationTurns: number;
  /** Shares of the saturation rate run open-loop, each for `loadSeconds`. */
  loads: number[];
  loadSeconds: number;
  /** Half-load RSS check duration (0: none). */
  rssSeconds: number;
  /**
   * Shares of saturation whose load rows alternate, window by window, with the same load to a
   * bare subscriber (`…/floor-Npct`: the transport's and the machine's own latency, in the same
   * seconds); each must be one of `loads`.
   */
  floorLoads: number[];
  /**
   * Shares of saturation run once more with a bare subscriber in a process of its own reading the
   * same frames at the same time (`…/paired-Npct`, `e2e_paired.ts`): what the sidecar adds to each
   * frame.
   */
  pairedLoads: number[];
}

/**
 * The phases of the serve bench for one SAE architecture.
 *
 * @example
 * ```ts
 * import { servePlan } from "./e2e_plan.ts";
 * servePlan("jumprelu", true).loads; // [0.25, 0.5]
 * ```
 */
export function servePlan(arch: "topk" | "jumprelu", quick: boolean): ServePlan {
  // rows --quick shares with a full run measure the same way (same tokens, same
  // seconds); --quick only runs fewer load rows and a shorter, differently named RSS row
  if (arch === "topk") {
    return {
      saturationTokens: 16384,
      saturationTurns: SATURATION_TURNS,
      loads: [0.5],
      loadSeconds: 5,
      rssSeconds: 0,
      floorLoads: [],
      pairedLoads: [],
    };
  }
  return {
    saturationTokens: 131072,
    saturationTurns: SATURATION_TURNS,
    loads: quick ? [0.25, 0.5] : [0.1, 0.25, 0.5, 0.75],
    loadSeconds: 5,
    rssSeconds: quick ? 10 : 120,
    floorLoads: [0.25, 0.5],
    pairedLoads: [0.25, 0.5],
  };
}
