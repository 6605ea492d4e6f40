/**
 * Steering planning: the steer actions of a firing turned into the
 * commands a tap applies (`docs/steering.md`), each rule's action sent once
 * per request, and the verdict a gated frame is answered with. Plain values
 * in and out: what was planned, what was skipped and why.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import type { Firing } from "../core/policy/engine.ts";
import type { GateVerdict, SteerCommand, SteerOp } from "../core/steer/protocol.ts";

/** Options of {@linkcode SteerPlanner}. */
export interface SteerPlanOptions {
  /** The monitor's name, carried by each command. */
  monitor: string;
  /** Width of the activations (each command's `dModel`). */
  dIn: number;
  /** Steering on (commands planned) or off (each action skipped as `disabled`). @default true */
  enabled?: boolean;
  /** How long a command lives. @default 5000 */
  ttlMs?: number;
  /** Requests whose sent actions are remembered; the oldest goes first. @default 100000 */
  maxRequests?: number;
}

/** A steer action not turned into a command, and why. */
export type SteerSkip =
  | { reason: "disabled"; rule: string; actions: number }
  | { reason: "repeat"; rule: string }
  | { reason: "unresolved"; rule: string; requestId: string; action: SteerAction };

/** What {@linkcode SteerPlanner.plan} reads. */
export interface SteerPlanInput {
  frame: Frame;
  firing: Firing;
  /** The firing's alert id ({@linkcode firingId}): commands are `<id>-s<i>`. */
  id: string;
  /** Each steer action of the generation, resolved. */
  steerOps?: ReadonlyMap<SteerAction, SteerOp>;
  /** Now, ms since the epoch (the commands' issue time). */
  now: number;
}

/**
 * Plans the steering commands of firings, remembering per request which
 * rule actions were sent, so that a rule firing again does not stack the
 * same operation on the tap.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import type { Firing } from "../core/policy/engine.ts";
 * import { SteerPlanner, type SteerSkip } from "./steer_plan.ts";
 * declare const frame: Frame;
 * declare const firing: Firing;
 * const planner = new SteerPlanner({ monitor: "demo", dIn: 768 });
 * const skipped: SteerSkip[] = [];
 * const commands = planner.plan({ frame, firing, id: "a1", now: Date.now() }, skipped);
 * ```
 */
export class SteerPlanner {
  readonly #o: SteerPlanOptions;
  readonly #enabled: boolean;
  readonly #ttlMs: number;
  /** Per request, the steer actions already sent (`rule#index`). */
  readonly #sent = new Map<string, Set<string>>();

  constructor(opts: SteerPlanOptions) {
    this.#o = opts;
    this.#enabled = opts.enabled ?? true;
    this.#ttlMs = opts.ttlMs ?? 5000;
  }

  /** The commands of one firing; actions not planned are pushed onto `skipped`. */
  plan(input: SteerPlanInput, skipped: SteerSkip[]): SteerCommand[] {
    const { frame, firing, id, now } = input;
    if (firing.steer.length === 0) return [];
    if (!this.#enabled) {
      skipped.push({ reason: "disabled", rule: firing.rule.id, actions: firing.steer.length });
      return [];
    }
    const commands: SteerCommand[] = [];
    let sent = this.#sent.get(frame.requestId);
    if (!sent) {
      this.#sent.set(frame.requestId, sent = new Set());
      if (this.#sent.size > (this.#o.maxRequests ?? 100_000)) {
        this.#sent.delete(this.#sent.keys().next().value!);
      }
    }
    firing.steer.forEach((action: SteerAction, i) => {
      // a rule steers a request once: firing again (suppress none, token windows)
      // must not stack the same operation on the tap
      const key = `${firing.rule.id}#${i}`;
      if (sent.has(key)) {
        skipped.push({ reason: "repeat", rule: firing.rule.id });
        return;
      }
      sent.add(key);
      const op = input.steerOps?.get(action);
      if (!op) {
        // resolved at start and reload; a generation built without them (tests) lands here
        skipped.push({
          reason: "unresolved",
          rule: firing.rule.id,
          requestId: frame.requestId,
          action,
        });
        return;
      }
      commands.push({
        id: `${id}-s${i}`,
        requestId: frame.requestId,
        model: frame.model,
        hook: frame.hook,
        dModel: this.#o.dIn,
        // from the token after this frame: the next step the model takes
        fromPosition: frame.position + frame.tokens,
        untilPosition: null,
        issuedAtMs: now,
        expiresAtMs: now + this.#ttlMs,
        monitor: this.#o.monitor,
        rule: firing.rule.id,
        ...(firing.alert ? { alertId: id } : {}),
        op,
      });
    });
    return commands;
  }

  /** Forget what was sent to a request (it ended or expired). */
  forget(requestId: string): void {
    this.#sent.delete(requestId);
  }
}

/**
 * The verdict a gated frame is answered with: `abort` when a command
 * aborts, `steer` with commands, `continue` otherwise. The one place that
 * decides it: `Evaluator.evaluate` (`./evaluate.ts`) calls it for every
 * frame's outcome.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import { gateVerdict } from "./steer_plan.ts";
 * declare const frame: Frame;
 * gateVerdict(frame, []).verdict; // "continue"
 * ```
 */
export function gateVerdict(
  frame: Pick<Frame, "requestId" | "seq">,
  commands: SteerCommand[],
): GateVerdict {
  return {
    requestId: frame.requestId,
    seq: frame.seq,
    verdict: commands.some((c) => c.op.kind === "abort")
      ? "abort"
      : commands.length > 0
      ? "steer"
      : "continue",
    commands,
  };
}
