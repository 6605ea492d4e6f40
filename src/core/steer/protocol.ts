/**
 * Steering protocol v1 (`docs/steering.md`): what the sidecar and a tap say
 * to each other. Commands that change one request's activations from a token
 * position on, the acknowledgements a tap sends back, the verdicts that
 * answer gated frames, and the two errors of steering (a message that breaks
 * the protocol; a policy action that cannot be resolved for an SAE). The
 * subjects are in `subjects.ts`, the wire in `encode.ts` and `parse.ts`, the
 * arithmetic of each operation in `arithmetic.ts`, and turning a policy's
 * action into vectors in `resolve.ts`. Pure: imports nothing outside
 * `src/core`.
 *
 * @module
 */
/** The protocol version this module writes and the only one it reads. */
export const STEER_VERSION = 1;

/** How a latent's value is read from one token's activation `x`: `pre = w·x + b`, `a = pre > threshold ? pre : 0`. */
export interface LatentRead {
  w: Float32Array;
  b: number;
  threshold: number;
}

/** A latent of a loaded SAE, named for logs and acknowledgements. */
export interface LatentRef {
  sae: string;
  index: number;
}

/** One steering operation, with its vectors resolved (`d_model` long). */
export type SteerOp =
  | { kind: "clamp"; value: number; latent: LatentRef; read: LatentRead; direction: Float32Array }
  | { kind: "ablate"; latent: LatentRef; read: LatentRead; direction: Float32Array }
  | { kind: "add"; scale: number; vector: Float32Array; latent?: LatentRef }
  | { kind: "cap"; max: number; direction: Float32Array; latent?: LatentRef }
  | { kind: "abort"; reason?: string };

/** A steering command: one operation on one request from a token position on. */
export interface SteerCommand {
  id: string;
  requestId: string;
  model: string;
  hook: string;
  dModel: number;
  /** First position (inclusive) the operation applies to. */
  fromPosition: number;
  /** First position it no longer applies to; null: to the end of the request. */
  untilPosition: number | null;
  issuedAtMs: number;
  expiresAtMs: number;
  monitor?: string;
  rule?: string;
  alertId?: string;
  op: SteerOp;
}

/** What an acknowledgement says happened to a command. */
export type AckStatus = "applied" | "rejected" | "expired" | "not_applied";

/** A tap's acknowledgement of one command. */
export interface SteerAck {
  id: string;
  requestId: string;
  status: AckStatus;
  /** `applied`: the first position the operation changed (for abort: the position not generated). */
  position?: number;
  reason?: string;
  tap?: string;
}

/** The sidecar's answer to a gated frame. */
export interface GateVerdict {
  requestId: string;
  seq: number;
  verdict: "continue" | "steer" | "abort" | "error";
  commands: SteerCommand[];
  reason?: string;
  /** Commands of the verdict that did not parse (each to be acknowledged `rejected`); the rest still apply. */
  rejected?: SteerProtocolError[];
}

/** A command, acknowledgement or verdict that does not follow the protocol. */
export class SteerProtocolError extends TypeError {
  readonly field: string;
  readonly expected: string;
  readonly found: string;
  /** The command id, when it could be read. */
  readonly commandId?: string;
  readonly requestId?: string;

  constructor(
    field: string,
    expected: string,
    found: string,
    where: { commandId?: string; requestId?: string } = {},
    options?: ErrorOptions,
  ) {
    const at = [
      where.commandId !== undefined ? `command ${where.commandId}` : "",
      where.requestId !== undefined ? `request ${where.requestId}` : "",
    ].filter((s) => s).join(", ");
    super(
      `steering${at ? ` (${at})` : ""}: ${field}: expected ${expected}, found ${found}`,
      options,
    );
    this.name = "SteerProtocolError";
    this.field = field;
    this.expected = expected;
    this.found = found;
    if (where.commandId !== undefined) this.commandId = where.commandId;
    if (where.requestId !== undefined) this.requestId = where.requestId;
  }
}

/** A policy's steer action cannot be turned into a command for this SAE. */
export class SteerResolveError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SteerResolveError";
  }
}
