/**
 * Steering messages on the wire, written: commands, acknowledgements and
 * verdicts as the JSON of `docs/steering.md` (snake_case keys, vectors as
 * base64 of little-endian f32). Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import {
  type GateVerdict,
  STEER_VERSION,
  type SteerAck,
  type SteerCommand,
  type SteerOp,
} from "./protocol.ts";
import { ByteSlab } from "../byte_slab.ts";
/**
 * Base64 (RFC 4648, padded) of `v` as little-endian f32.
 *
 * @example
 * ```ts
 * vectorToBase64(new Float32Array([1])); // "AACAPw=="
 * ```
 */
export function vectorToBase64(v: Float32Array): string {
  const bytes = new Uint8Array(v.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < v.length; i++) view.setFloat32(i * 4, v[i], true);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function opToWire(op: SteerOp): Record<string, unknown> {
  switch (op.kind) {
    case "clamp":
    case "ablate":
      return {
        kind: op.kind,
        ...(op.kind === "clamp" ? { value: op.value } : {}),
        latent: { sae: op.latent.sae, index: op.latent.index },
        read: { w: vectorToBase64(op.read.w), b: op.read.b, threshold: op.read.threshold },
        direction: vectorToBase64(op.direction),
      };
    case "add":
      return {
        kind: "add",
        scale: op.scale,
        vector: vectorToBase64(op.vector),
        ...(op.latent ? { latent: op.latent } : {}),
      };
    case "cap":
      return {
        kind: "cap",
        max: op.max,
        direction: vectorToBase64(op.direction),
        ...(op.latent ? { latent: op.latent } : {}),
      };
    case "abort":
      return { kind: "abort", ...(op.reason !== undefined ? { reason: op.reason } : {}) };
  }
}

/**
 * A command as the JSON object of `docs/steering.md` (snake_case keys, vectors in base64).
 *
 * @example
 * ```ts
 * const wire = commandToWire({ id: "c1", requestId: "r1", model: "m", hook: "h", dModel: 2,
 *   fromPosition: 3, untilPosition: null, issuedAtMs: 0, expiresAtMs: 5000, op: { kind: "abort" } });
 * wire.from_position; // 3
 * ```
 */
export function commandToWire(cmd: SteerCommand): Record<string, unknown> {
  return {
    v: STEER_VERSION,
    id: cmd.id,
    request_id: cmd.requestId,
    model: cmd.model,
    hook: cmd.hook,
    d_model: cmd.dModel,
    from_position: cmd.fromPosition,
    until_position: cmd.untilPosition,
    issued_at_ms: cmd.issuedAtMs,
    expires_at_ms: cmd.expiresAtMs,
    ...(cmd.monitor !== undefined ? { monitor: cmd.monitor } : {}),
    ...(cmd.rule !== undefined ? { rule: cmd.rule } : {}),
    ...(cmd.alertId !== undefined ? { alert_id: cmd.alertId } : {}),
    op: opToWire(cmd.op),
  };
}

const utf8 = new TextEncoder();
/** Verdicts' bytes (`encodeVerdict`): views of a shared slab. */
const verdictBytes = new ByteSlab();

/**
 * The message payload of a command.
 *
 * @example
 * ```ts
 * import type { SteerCommand } from "./protocol.ts";
 * import { steerSubject } from "./subjects.ts";
 * declare const bus: { publish(subject: string, data: Uint8Array): void };
 * declare const cmd: SteerCommand;
 * bus.publish(steerSubject(cmd.model, cmd.hook, 0), encodeCommand(cmd));
 * ```
 */
export function encodeCommand(cmd: SteerCommand): Uint8Array {
  return utf8.encode(JSON.stringify(commandToWire(cmd)));
}

/**
 * The message payload of an acknowledgement.
 *
 * @example
 * ```ts
 * encodeAck({ id: "c1", requestId: "r1", status: "applied", position: 8 });
 * ```
 */
export function encodeAck(ack: SteerAck): Uint8Array {
  return utf8.encode(JSON.stringify({
    v: STEER_VERSION,
    id: ack.id,
    request_id: ack.requestId,
    status: ack.status,
    ...(ack.position !== undefined ? { position: ack.position } : {}),
    ...(ack.reason !== undefined ? { reason: ack.reason } : {}),
    ...(ack.tap !== undefined ? { tap: ack.tap } : {}),
  }));
}

/**
 * The reply payload to a gated frame.
 *
 * @example
 * ```ts
 * encodeVerdict({ requestId: "r1", seq: 3, verdict: "continue", commands: [] });
 * ```
 */
export function encodeVerdict(v: GateVerdict): Uint8Array {
  // one per gated decode step: into a shared slab rather than a buffer of its own
  return verdictBytes.utf8(verdictText(v));
}

/**
 * The JSON text of a verdict, as {@linkcode encodeVerdict} sends it: written
 * as a template rather than an object given to `JSON.stringify`, one per
 * gated decode step (the same text, keys in the same order: tested against
 * it).
 *
 * @example
 * ```ts
 * verdictText({ requestId: "r1", seq: 3, verdict: "continue", commands: [] });
 * // '{"v":1,"request_id":"r1","seq":3,"verdict":"continue","commands":[]}'
 * ```
 */
export function verdictText(v: GateVerdict): string {
  const commands = v.commands.length === 0 ? "[]" : JSON.stringify(v.commands.map(commandToWire));
  const reason = v.reason !== undefined ? `,"reason":${JSON.stringify(v.reason)}` : "";
  return `{"v":${STEER_VERSION},"request_id":${JSON.stringify(v.requestId)},"seq":${
    JSON.stringify(v.seq)
  },"verdict":${JSON.stringify(v.verdict)},"commands":${commands}${reason}}`;
}
