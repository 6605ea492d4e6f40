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
import type { SteerCommand } from "../core/steer/protocol.ts";
import { buildAlert, firingId } from "./alert.ts";
import {
  type BatchOutcome,
  type FrameOutcome,
  mergeFirings,
  NOTHING,
  type VerdictPass,
} from "./frame_outcome.ts";
import type { Generation } from "./generation.ts";
import { gateVerdict, SteerPlanner, type SteerSkip } from "./steer_plan.ts";
import { tokenBatch } from "./token_batch.ts";

export { tokenBatch } from "./token_batch.ts";
export type { BatchOutcome, FrameFailure, FrameOutcome, VerdictPass } from "./frame_outcome.ts";
import {
  PART_ALL,
  PART_REST,
  PART_VERDICT,
  type RulePart,
  rulePart,
} from "../core/policy/verdict_rules.ts";

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

/** What a frame's alerts are built from. */
interface AlertsInput {
  frame: Frame;
  firstRow: number;
  firings: readonly Firing[];
  now: number;
  latents: ReadonlyMap<string, LatentTable>;
  /** In a batch's second pass, the first pass's latents, for the steering rules' alerts. */
  steeringLatents?: ReadonlyMap<string, LatentTable>;
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
    const firings = this.#fire(gen, tokenBatch(frame, firstRow, latents), now, PART_ALL);
    if (firings.length === 0) return NOTHING;
    const { commands, skipped } = this.#plan(gen, frame, firings, now);
    const alerts = this.#alerts(gen, { frame, firstRow, firings, now, latents });
    return { firings, alerts, commands, verdict: gateVerdict(frame, commands).verdict, skipped };
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

  /**
   * Whether a batch may be evaluated in two passes with the result of one
   * ({@linkcode evaluateVerdicts}, then {@linkcode finishBatch}): when no
   * frame of it ends its request (a request ends after both passes, and a
   * frame after the end marker starts the request afresh) and it cannot
   * hold more requests than the engine keeps (so the second pass evicts
   * none the first pass brought in).
   *
   * @example
   * ```ts
   * import type { Frame } from "../core/frame/format.ts";
   * declare const evaluator: Evaluator, frames: Frame[];
   * const twoPasses = evaluator.canSplit(frames);
   * ```
   */
  canSplit(frames: readonly Frame[]): boolean {
    if (frames.length > this.#engine.maxRequests) return false;
    for (const f of frames) if (f.endOfRequest) return false;
    return true;
  }

  /**
   * The first of a batch's two passes (`serve` takes them for a batch with
   * gated frames, verdict_rules.ts): each frame evaluated with the rules
   * that steer only, on `latents` holding at least what those rules read.
   * Each frame's outcome has its commands and verdict, no alerts yet; pass
   * the result to {@linkcode finishBatch}, before any other evaluation. For
   * a batch {@linkcode canSplit} accepts.
   *
   * @example
   * ```ts
   * import type { Frame } from "../core/frame/format.ts";
   * import type { LatentTable } from "../core/latent_rows.ts";
   * import { Evaluator } from "./evaluate.ts";
   * import type { Generation } from "./generation.ts";
   * declare const evaluator: Evaluator, gen: Generation, frames: Frame[];
   * declare const steeringLatents: Map<string, LatentTable>, allLatents: Map<string, LatentTable>;
   * const first = evaluator.evaluateVerdicts(gen, frames, steeringLatents);
   * // ... answer the gated frames with first.frames[i].verdict ...
   * const { alerts } = evaluator.finishBatch(gen, frames, allLatents, first);
   * ```
   */
  evaluateVerdicts(
    gen: Generation,
    frames: readonly Frame[],
    latents: ReadonlyMap<string, LatentTable>,
  ): VerdictPass {
    const pass: VerdictPass = { frames: [], times: [], latents };
    let row = 0;
    for (const frame of frames) {
      // as evaluateBatch: the clock is read for a frame with tokens only
      const now = frame.tokens > 0 ? this.#clock() : 0;
      pass.times.push(now);
      try {
        const firings = frame.tokens > 0
          ? this.#fire(gen, tokenBatch(frame, row, latents), now, PART_VERDICT)
          : [];
        if (firings.length === 0) pass.frames.push(NOTHING);
        else {
          const { commands, skipped } = this.#plan(gen, frame, firings, now);
          const { verdict } = gateVerdict(frame, commands);
          pass.frames.push({ firings, alerts: [], commands, verdict, skipped });
        }
      } catch (err) {
        pass.frames.push({ error: err as Error });
      }
      row += frame.tokens;
    }
    return pass;
  }

  /**
   * The second pass: each frame evaluated with the rules that do not steer,
   * on `latents` holding every signal the set reads, and the frame's alerts
   * built from both passes' firings in rule order (a steering rule's alert
   * reads the latents it was evaluated on). What it returns is what
   * {@linkcode evaluateBatch} returns for the batch. A frame whose first
   * pass failed keeps its failure. With `rest: false` (the rest could not
   * be encoded) the other rules are not run: the steering rules' alerts are
   * built all the same.
   */
  finishBatch(
    gen: Generation,
    frames: readonly Frame[],
    latents: ReadonlyMap<string, LatentTable>,
    first: VerdictPass,
    opts: { rest?: boolean } = {},
  ): BatchOutcome {
    const rest = opts.rest ?? true;
    const out: BatchOutcome = { frames: [], alerts: [] };
    let row = 0;
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i];
      const before = first.frames[i];
      const now = first.times[i];
      try {
        if (frame.tokens > 0 && !("error" in before)) {
          const others = rest
            ? this.#fire(gen, tokenBatch(frame, row, latents), now, PART_REST)
            : [];
          const firings = mergeFirings(before.firings, others);
          const o: FrameOutcome = firings.length === 0 ? NOTHING : {
            ...before,
            firings,
            alerts: this.#alerts(gen, {
              frame,
              firstRow: row,
              now,
              firings,
              latents,
              steeringLatents: first.latents,
            }),
          };
          for (const a of o.alerts) out.alerts.push(a);
          out.frames.push(o);
        } else out.frames.push(before);
      } catch (err) {
        out.frames.push({ error: err as Error });
      }
      row += frame.tokens;
      if (frame.endOfRequest) this.endRequest(frame.requestId);
    }
    return out;
  }

  /** The engine's firings of `part`'s rules, with `gen`'s policies, at `now`. */
  #fire(gen: Generation, batch: TokenBatch, now: number, part: RulePart): readonly Firing[] {
    // the engine evaluates with the set the batch was encoded for (a swap
    // between encode and evaluate must not pair new rules with old encoders)
    if (this.#engine.set !== gen.policies) this.#engine.swap(gen.policies);
    this.#now = now;
    return this.#engine.evaluate(batch, part);
  }

  /** The steering commands the firings plan, and the actions skipped. */
  #plan(
    gen: Generation,
    frame: Frame,
    firings: readonly Firing[],
    now: number,
  ): { commands: SteerCommand[]; skipped: SteerSkip[] } {
    const commands: SteerCommand[] = [];
    const skipped: SteerSkip[] = [];
    for (const firing of firings) {
      if (firing.steer.length === 0) continue;
      const id = firingId(this.#o.monitor, firing);
      for (
        const c of this.#planner.plan({ frame, firing, id, steerOps: gen.steerOps, now }, skipped)
      ) commands.push(c);
    }
    return { commands, skipped };
  }

  /** The alerts of a frame's firings, in order. */
  #alerts(gen: Generation, input: AlertsInput): Alert[] {
    const alerts: Alert[] = [];
    let time: string | undefined;
    for (const firing of input.firings) {
      if (!firing.alert) continue;
      time ??= new Date(input.now).toISOString();
      const steering = input.steeringLatents !== undefined &&
        rulePart(firing.rule) === PART_VERDICT;
      alerts.push(buildAlert({
        monitor: this.#o.monitor,
        frame: input.frame,
        firstRow: input.firstRow,
        latents: steering ? input.steeringLatents! : input.latents,
        firing,
        policyVersion: gen.policies.version,
        labels: gen.labels,
        time,
        ...(this.#o.redaction ? { redaction: this.#o.redaction } : {}),
      }));
    }
    return alerts;
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
