/**
 * Inline gating in the tap (`docs/steering.md`): the options a gate takes,
 * what a gated step reports, and how the sidecar's answer to a gated step
 * is read (a plain `continue` without parsing its JSON).
 *
 * @module
 */
import { type BusMessage, BusRequestError, MAX_REQUEST_TIMEOUT_MS } from "../bus/bus.ts";
import { isPlainContinue, parseVerdict } from "../core/steer/parse.ts";
import { type SteerCommand, SteerProtocolError } from "../core/steer/protocol.ts";

/**
 * How long {@linkcode Tap.step} waits for the sidecar's verdict, and what a
 * step does without one: go on (`open`) or abort the request (`closed`).
 */
export interface GateOptions {
  deadlineMs: number;
  onTimeout: "open" | "closed";
}

/** What {@linkcode Tap.step} did. */
export interface StepResult {
  /** False once the request must stop (abort command, gate failed closed). */
  proceed: boolean;
  /** The verdict (`ungated` without a gate; `timeout` when none came in time). */
  verdict: "ungated" | "continue" | "steer" | "abort" | "error" | "timeout";
  /** Milliseconds spent waiting for the verdict (0 ungated). */
  waitedMs: number;
  /** Why the request stops, when it does. */
  reason?: string;
}

/**
 * The gate options when they are usable: a deadline in (0, the bus's
 * longest request timeout] and a known failure mode. Throws `RangeError`.
 *
 * @example
 * ```ts
 * checkGateOptions({ deadlineMs: 5, onTimeout: "open" }); // { deadlineMs: 5, onTimeout: "open" }
 * ```
 */
export function checkGateOptions(gate: GateOptions): GateOptions {
  const { deadlineMs } = gate;
  if (
    !(deadlineMs > 0 && deadlineMs <= MAX_REQUEST_TIMEOUT_MS) ||
    !["open", "closed"].includes(gate.onTimeout)
  ) {
    throw new RangeError(
      `tap gate: expected { deadlineMs in (0, ${MAX_REQUEST_TIMEOUT_MS}], onTimeout: "open" | "closed" }, found ${
        JSON.stringify(gate)
      }`,
    );
  }
  return gate;
}

/** The step a verdict must answer, and the hook its commands must fit. */
export interface VerdictExpect {
  model: string;
  hook: string;
  dModel: number;
  requestId: string;
  seq: number;
}

/** What the tap does with a verdict's parts. */
export interface VerdictHandlers {
  /** A command of the verdict that did not parse (to be acknowledged as rejected). */
  reject(err: SteerProtocolError): void;
  /** A command of the verdict, to take effect from the next step. */
  receive(cmd: SteerCommand): void;
  /** The sidecar could not evaluate the step (an `error` verdict). */
  fail(why: string): void;
}

/**
 * Read a verdict other than a plain `continue`: its commands go to
 * `handlers.receive`, malformed ones to `handlers.reject`, and an `error`
 * verdict to `handlers.fail`. Throws {@linkcode SteerProtocolError} for a
 * malformed verdict or one answering another step.
 *
 * @example
 * ```ts
 * const data = new TextEncoder().encode('{"v":1,"request_id":"r","seq":3,"verdict":"continue","commands":[]}');
 * const expect = { model: "gpt2", hook: "blocks.6.hook_resid_post", dModel: 768, requestId: "r", seq: 3 };
 * readVerdict(data, expect, { reject() {}, receive() {}, fail() {} }); // "continue"
 * ```
 */
export function readVerdict(
  data: Uint8Array,
  expect: VerdictExpect,
  handlers: VerdictHandlers,
): StepResult["verdict"] {
  const { model, hook, dModel, requestId, seq } = expect;
  const v = parseVerdict(data, { model, hook, dModel });
  if (v.requestId !== requestId || v.seq !== seq) {
    throw new SteerProtocolError(
      "verdict",
      `the answer to request ${requestId} seq ${seq}`,
      `request ${v.requestId} seq ${v.seq}`,
    );
  }
  for (const err of v.rejected ?? []) handlers.reject(err);
  for (const cmd of v.commands) handlers.receive(cmd);
  if (v.verdict === "error") {
    handlers.fail(`sidecar could not evaluate the step: ${v.reason ?? "?"}`);
  }
  return v.verdict;
}

/** What {@linkcode awaitVerdict} read: the verdict, and why the gate failed when it did. */
export interface GateOutcome {
  verdict: StepResult["verdict"];
  /** Empty when the step was answered; else the reason (timeout, no listener, bad verdict). */
  failure: string;
}

/**
 * Wait for the answer to a gated step and read it. A plain `continue` for
 * the step is recognised without parsing its JSON (almost every answer);
 * anything else goes through {@linkcode readVerdict}. A timeout, a bus
 * error or a malformed verdict is a failure, with its reason, never a throw.
 *
 * @example
 * ```ts
 * import type { BusMessage } from "../bus/bus.ts";
 * declare const pending: Promise<BusMessage>;
 * const expect = { model: "gpt2", hook: "blocks.6.hook_resid_post", dModel: 768, requestId: "r", seq: 3 };
 * const { verdict, failure } = await awaitVerdict(pending, expect, { reject() {}, receive() {} });
 * ```
 */
export async function awaitVerdict(
  pending: Promise<BusMessage>,
  expect: VerdictExpect,
  handlers: Omit<VerdictHandlers, "fail">,
): Promise<GateOutcome> {
  let failure = "";
  try {
    const reply = await pending;
    if (isPlainContinue(reply.data, expect.requestId, expect.seq)) {
      return { verdict: "continue", failure };
    }
    const verdict = readVerdict(reply.data, expect, {
      reject: handlers.reject,
      receive: handlers.receive,
      fail: (why) => failure = why,
    });
    return { verdict, failure };
  } catch (err) {
    const timeout = err instanceof BusRequestError && err.kind === "timeout";
    return { verdict: timeout ? "timeout" : "error", failure: (err as Error).message };
  }
}
