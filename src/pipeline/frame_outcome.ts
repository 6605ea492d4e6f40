/**
 * What the evaluation stage returns: a frame's outcome (its firings, and
 * the alerts, steering commands, verdict and skipped steer actions they ask
 * for), the one shared outcome of a frame where nothing fired, a frame that
 * failed, a batch's outcome, and the first of a batch's two passes. Also
 * how the two passes' firings are merged back into rule order.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Firing } from "../core/policy/engine.ts";
import type { LatentTable } from "../core/latent_rows.ts";
import type { GateVerdict, SteerCommand } from "../core/steer/protocol.ts";
import type { SteerSkip } from "./steer_plan.ts";

/** What one frame's evaluation asks for. */
export interface FrameOutcome {
  /** The engine's firings, in order. */
  firings: readonly Firing[];
  /** The alerts they raise (steer-only firings raise none). */
  alerts: readonly Alert[];
  /** Steering commands, for the tap (in the verdict when the frame is gated). */
  commands: readonly SteerCommand[];
  /** The verdict a gated frame is answered with. */
  verdict: GateVerdict["verdict"];
  /** Steer actions not planned, and why. */
  skipped: readonly SteerSkip[];
}

/** Nothing fired: shared by every such frame, so it and its arrays are frozen. */
export const NOTHING: FrameOutcome = Object.freeze({
  firings: Object.freeze([]),
  alerts: Object.freeze([]),
  commands: Object.freeze([]),
  verdict: "continue",
  skipped: Object.freeze([]),
});

/** What `Evaluator.evaluateVerdicts` returns, for `Evaluator.finishBatch`. */
export interface VerdictPass {
  /** Per frame, in order: its outcome with the steering rules (no alerts yet), or why it failed. */
  frames: (FrameOutcome | FrameFailure)[];
  /** Each frame's time, which the second pass evaluates it at too. */
  times: number[];
  /** The latents the first pass read (a steering rule's alert reads them). */
  latents: ReadonlyMap<string, LatentTable>;
}

/**
 * Two lists of firings, each in rule order, merged into one in rule order
 * (either list itself when the other is empty).
 *
 * @example
 * ```ts
 * import type { Firing } from "../core/policy/engine.ts";
 * import { mergeFirings } from "./frame_outcome.ts";
 * declare const verdictFirings: Firing[], otherFirings: Firing[];
 * const firings = mergeFirings(verdictFirings, otherFirings);
 * ```
 */
export function mergeFirings(a: readonly Firing[], b: readonly Firing[]): readonly Firing[] {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out: Firing[] = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i].rule.index < b[j].rule.index)) out.push(a[i++]);
    else out.push(b[j++]);
  }
  return out;
}

/** A frame whose evaluation threw: the batch's other frames are still evaluated. */
export interface FrameFailure {
  error: Error;
}

/** What `Evaluator.evaluateBatch` returns. */
export interface BatchOutcome {
  /** Per frame, in order: its outcome, or why it failed. */
  frames: (FrameOutcome | FrameFailure)[];
  /** Every alert of the batch, in order (evidence attaches here). */
  alerts: Alert[];
}
