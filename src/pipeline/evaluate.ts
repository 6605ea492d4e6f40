/**
 * The evaluation stage: a frame's tokens, encoded, run through the policy
 * engine, and what the firings ask for returned as values: the alerts
 * (built by `./alert.ts`), the steering commands (planned by
 * `./steer_plan.ts`), the verdict a gated frame gets, and the steer actions
 * skipped. `serve` sends and publishes them; offline replay collects them.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { RedactOptions } from "../core/redact.ts";
import type { Frame } from "../core/frame/format.ts";
import type { CompiledPolicySet } from "../core/policy/compile.ts";
import {
  type EngineStats,
  type Firing,
  PolicyEngine,
  type TokenBatch,
} from "../core/policy/engine.ts";
import type { LatentTable } from "../core/latent_rows.ts";
import type { GateVerdict, SteerCommand } from "../core/steer/protocol.ts";
import { buildAlert, firingId } from "./alert.ts";
import type { Generation } from "./generation.ts";
import { gateVerdict, SteerPlanner, type SteerSkip } from "./steer_plan.ts";

/** Options of {@linkcode Evaluator}. */
export interface EvaluatorOptions {
  /** The monitor's name (alerts, commands). */
  monitor: string;
  /** Width of the activations. */
  dIn: number;
  /** Steering settings (`docs/steering.md`). @default { enabled: true, ttlMs: 5000 } */
  steering?: { enabled: boolean; ttlMs: number };
  /** At most this many requests have policy state. @default 100000 */
  maxRequests?: number;
  /** A request's policy state is evicted by `sweep()` after this long without frames. @default 600000 */
  requestTtlMs?: number;
  /**
   * The clock (ms since the epoch): the engine's time for suppression, the
   * commands' issue time and the alerts' `time`. Offline replay passes the
   * recorded receive time per frame instead (see {@linkcode Evaluator.evaluate}).
   * @default Date.now
   */
  now?: () => number;
  /**
   * The monitor's redaction of token text in alerts (`redaction:`); a rule's
   * `redact` is combined with it, the stricter winning. @default { mode: "none" }
   */
  redaction?: RedactOptions;
}

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
const NOTHING: FrameOutcome = Object.freeze({
  firings: Object.freeze([]),
  alerts: Object.freeze([]),
  commands: Object.freeze([]),
  verdict: "continue",
  skipped: Object.freeze([]),
});

/** A frame whose evaluation threw: the batch's other frames are still evaluated. */
export interface FrameFailure {
  error: Error;
}

/** What {@linkcode Evaluator.evaluateBatch} returns. */
export interface BatchOutcome {
  /** Per frame, in order: its outcome, or why it failed. */
  frames: (FrameOutcome | FrameFailure)[];
  /** Every alert of the batch, in order (evidence attaches here). */
  alerts: Alert[];
}

/**
 * Per-request policy state (windows, suppression, steering sent), across
 * generations, and the evaluation of frames against a generation.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import type { LatentTable } from "../core/latent_rows.ts";
 * import { Evaluator } from "./evaluate.ts";
 * import type { Generation } from "./generation.ts";
 * declare const gen: Generation;
 * declare const frames: Frame[];
 * declare const latents: Map<string, LatentTable>;
 * const evaluator = new Evaluator(gen.policies, { monitor: "demo", dIn: 768 });
 * const { alerts } = evaluator.evaluateBatch(gen, frames, latents);
 * ```
 */
export class Evaluator {
  readonly #o: EvaluatorOptions;
  readonly #engine: PolicyEngine;
  readonly #planner: SteerPlanner;
  readonly #clock: () => number;
  /** The time of the frame being evaluated. */
  #now = 0;

  constructor(policies: CompiledPolicySet, opts: EvaluatorOptions) {
    this.#o = opts;
    this.#clock = opts.now ?? Date.now;
    this.#engine = new PolicyEngine(policies, {
      maxRequests: opts.maxRequests,
      ttlMs: opts.requestTtlMs,
      now: () => this.#now,
    });
    this.#planner = new SteerPlanner({
      monitor: opts.monitor,
      dIn: opts.dIn,
      enabled: opts.steering?.enabled ?? true,
      ttlMs: opts.steering?.ttlMs ?? 5000,
      maxRequests: opts.maxRequests,
    });
  }

  /** The policy engine's counters. */
  get stats(): EngineStats {
    return this.#engine.stats;
  }

  /**
   * Evaluate one frame's tokens (rows from `firstRow` of `latents`) with
   * `gen`'s policies, at time `now`.
   */
  evaluate(
    gen: Generation,
    frame: Frame,
    firstRow: number,
    latents: ReadonlyMap<string, LatentTable>,
    now: number = this.#clock(),
  ): FrameOutcome {
    // the engine evaluates with the set the batch was encoded for (a swap
    // between encode and evaluate must not pair new rules with old encoders)
    if (this.#engine.set !== gen.policies) this.#engine.swap(gen.policies);
    this.#now = now;
    const firings = this.#engine.evaluate(tokenBatch(frame, firstRow, latents));
    if (firings.length === 0) return NOTHING;
    const alerts: Alert[] = [];
    const commands: SteerCommand[] = [];
    const skipped: SteerSkip[] = [];
    let time: string | undefined;
    for (const firing of firings) {
      const id = firingId(this.#o.monitor, firing);
      for (
        const c of this.#planner.plan({ frame, firing, id, steerOps: gen.steerOps, now }, skipped)
      ) commands.push(c);
      if (!firing.alert) continue;
      time ??= new Date(now).toISOString();
      alerts.push(buildAlert({
        monitor: this.#o.monitor,
        frame,
        firstRow,
        latents,
        firing,
        policyVersion: gen.policies.version,
        labels: gen.labels,
        time,
        ...(this.#o.redaction ? { redaction: this.#o.redaction } : {}),
      }));
    }
    const { verdict } = gateVerdict(frame, commands);
    return { firings, alerts, commands, verdict, skipped };
  }

  /**
   * Evaluate a batch's frames in order (a frame without tokens fires
   * nothing); a frame's end marker ends its request's state after its
   * tokens. One frame's failure does not stop the others. `now` gives each
   * frame's time (default: the clock).
   */
  evaluateBatch(
    gen: Generation,
    frames: readonly Frame[],
    latents: ReadonlyMap<string, LatentTable>,
    now?: (frame: Frame, index: number) => number,
  ): BatchOutcome {
    const out: BatchOutcome = { frames: [], alerts: [] };
    let row = 0;
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i];
      try {
        if (frame.tokens > 0) {
          const o = this.evaluate(gen, frame, row, latents, now ? now(frame, i) : this.#clock());
          for (const a of o.alerts) out.alerts.push(a);
          out.frames.push(o);
        } else out.frames.push(NOTHING);
      } catch (err) {
        out.frames.push({ error: err as Error });
      }
      row += frame.tokens;
      // the end marker is processed after the request's tokens: its windows can go
      if (frame.endOfRequest) this.endRequest(frame.requestId);
    }
    return out;
  }

  /** Forget a request's state: it ended (its windows and steering go now, not at the TTL). */
  endRequest(requestId: string): void {
    this.#engine.endRequest(requestId);
    this.#planner.forget(requestId);
  }

  /** Forget the steering sent to a request that expired at intake. */
  expire(requestId: string): void {
    this.#planner.forget(requestId);
  }

  /** Evict policy state idle past the TTL or over capacity. */
  sweep(): void {
    this.#now = this.#clock();
    this.#engine.sweep();
  }
}

/**
 * The policy engine's input for one frame: its request context and its
 * tokens, whose rows start at `firstRow` of `latents`.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import { tokenBatch } from "./evaluate.ts";
 * declare const frame: Frame;
 * tokenBatch(frame, 0, new Map()).position === frame.position; // true
 * ```
 */
export function tokenBatch(
  frame: Frame,
  firstRow: number,
  latents: ReadonlyMap<string, LatentTable>,
): TokenBatch {
  return {
    ctx: {
      requestId: frame.requestId,
      model: frame.model,
      hook: frame.hook,
      ...(frame.tenant !== undefined ? { tenant: frame.tenant } : {}),
      ...(frame.meta !== undefined ? { meta: frame.meta } : {}),
      ...(frame.phase !== undefined ? { phase: frame.phase } : {}),
    },
    position: frame.position,
    tokens: frame.tokens,
    latents,
    firstRow,
    ...(frame.tokenText !== undefined ? { tokenText: frame.tokenText } : {}),
  };
}
