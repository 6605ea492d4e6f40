/**
 * Steering messages on the wire, read strictly: commands, acknowledgements
 * and verdicts parsed and checked, with a {@linkcode SteerProtocolError} that
 * names the field, what was expected and what was found (each field read by
 * ./parse_fields.ts). Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { verdictText } from "./encode.ts";
import {
  type AckStatus,
  type GateVerdict,
  type LatentRead,
  type LatentRef,
  STEER_VERSION,
  type SteerAck,
  type SteerCommand,
  type SteerOp,
  SteerProtocolError,
} from "./protocol.ts";
import {
  asObject,
  MAX_ID,
  parseJson,
  readFinite,
  readInt,
  readName,
  readOptionalName,
  show,
  showValue,
  typeOf,
  type Where,
} from "./parse_fields.ts";

function latentRef(
  o: Record<string, unknown>,
  where: Where,
  required: boolean,
): LatentRef | undefined {
  if (o.latent === undefined && !required) return undefined;
  const l = asObject(o.latent, "op.latent", "an object {sae, index}", where);
  return {
    sae: readName(l, "sae", where, "op.latent."),
    index: readInt(l, "index", 0, where, "op.latent."),
  };
}

/**
 * Decode a base64 f32le vector of exactly `n` finite values.
 *
 * @example
 * ```ts
 * vectorFromBase64("AACAPw==", 1, "op.vector"); // Float32Array [1]
 * ```
 */
export function vectorFromBase64(
  text: unknown,
  n: number,
  field: string,
  where: { commandId?: string; requestId?: string } = {},
): Float32Array {
  if (typeof text !== "string") {
    throw new SteerProtocolError(field, `a base64 string of ${n} f32 values`, typeOf(text), where);
  }
  let bin: string;
  try {
    bin = atob(text);
  } catch (err) {
    throw new SteerProtocolError(field, "valid base64", show(text), where, { cause: err });
  }
  if (bin.length !== n * 4) {
    throw new SteerProtocolError(
      field,
      `${n} f32 values (${n * 4} bytes, d_model ${n})`,
      `${bin.length} bytes`,
      where,
    );
  }
  const view = new DataView(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) view.setUint8(i, bin.charCodeAt(i));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = view.getFloat32(i * 4, true);
    if (!Number.isFinite(out[i])) {
      throw new SteerProtocolError(field, "finite values", `${out[i]} at index ${i}`, where);
    }
  }
  return out;
}

const OP_KINDS = ["clamp", "ablate", "add", "cap", "abort"] as const;

function parseOp(raw: unknown, dModel: number, where: Where): SteerOp {
  const o = asObject(raw, "op", "an object with a kind", where);
  const kind = o.kind;
  const vec = (key: string, v: unknown) => vectorFromBase64(v, dModel, `op.${key}`, where);
  switch (kind) {
    case "clamp":
    case "ablate": {
      const r = asObject(o.read, "op.read", "an object {w, b, threshold}", where);
      const read: LatentRead = {
        w: vectorFromBase64(r.w, dModel, "op.read.w", where),
        b: readFinite(r, "b", where, "op.read."),
        threshold: readFinite(r, "threshold", where, "op.read."),
      };
      const latent = latentRef(o, where, true)!;
      const direction = vec("direction", o.direction);
      return kind === "clamp"
        ? { kind, value: readFinite(o, "value", where), latent, read, direction }
        : { kind, latent, read, direction };
    }
    case "add": {
      const latent = latentRef(o, where, false);
      return {
        kind,
        scale: readFinite(o, "scale", where),
        vector: vec("vector", o.vector),
        ...(latent ? { latent } : {}),
      };
    }
    case "cap": {
      const latent = latentRef(o, where, false);
      const direction = vec("direction", o.direction);
      let norm = 0;
      for (const d of direction) norm += d * d;
      if (Math.abs(Math.sqrt(norm) - 1) > 1e-3) {
        throw new SteerProtocolError(
          "op.direction",
          "a unit vector (‖direction‖ = 1)",
          `‖direction‖ = ${Math.sqrt(norm)}`,
          where,
        );
      }
      return { kind, max: readFinite(o, "max", where), direction, ...(latent ? { latent } : {}) };
    }
    case "abort": {
      if (o.reason !== undefined && typeof o.reason !== "string") {
        throw new SteerProtocolError("op.reason", "a string", typeOf(o.reason), where);
      }
      return { kind, ...(o.reason !== undefined ? { reason: o.reason as string } : {}) };
    }
    default:
      throw new SteerProtocolError("op.kind", `one of ${OP_KINDS.join(", ")}`, typeOf(kind), where);
  }
}

/** What a tap checks a command against. */
export interface CommandExpect {
  model?: string;
  hook?: string;
  dModel?: number;
}

/**
 * Parse and check one command (a payload or an already-parsed JSON object).
 * Throws {@linkcode SteerProtocolError} naming the field, what was expected
 * and what was found. Expiry is not checked here: see {@linkcode isExpired}.
 *
 * @example
 * ```ts
 * declare const msg: { data: Uint8Array };
 * const cmd = parseCommand(msg.data, { model: "gpt2", hook: "blocks.6.hook_resid_post", dModel: 768 });
 * ```
 */
export function parseCommand(
  raw: Uint8Array | Record<string, unknown>,
  expect: CommandExpect = {},
): SteerCommand {
  const o = raw instanceof Uint8Array ? parseJson(raw, "steering command") : raw;
  const where: Where = {};
  if (typeof o.id === "string" && o.id.length > 0 && o.id.length <= MAX_ID) where.commandId = o.id;
  if (typeof o.request_id === "string" && o.request_id.length <= MAX_ID) {
    where.requestId = o.request_id;
  }
  if (o.v !== STEER_VERSION) {
    throw new SteerProtocolError(
      "v",
      String(STEER_VERSION),
      typeOf(o.v) === "number" ? String(o.v) : typeOf(o.v),
      where,
    );
  }
  const id = readName(o, "id", where);
  const requestId = readName(o, "request_id", where);
  const model = readName(o, "model", where);
  const hook = readName(o, "hook", where);
  const dModel = readInt(o, "d_model", 1, where);
  if (expect.model !== undefined && model !== expect.model) {
    throw new SteerProtocolError("model", show(expect.model), show(model), where);
  }
  if (expect.hook !== undefined && hook !== expect.hook) {
    throw new SteerProtocolError("hook", show(expect.hook), show(hook), where);
  }
  if (expect.dModel !== undefined && dModel !== expect.dModel) {
    throw new SteerProtocolError(
      "d_model",
      `${expect.dModel} (the hook's width)`,
      String(dModel),
      where,
    );
  }
  const fromPosition = readInt(o, "from_position", 0, where);
  let untilPosition: number | null = null;
  if (o.until_position !== null && o.until_position !== undefined) {
    untilPosition = readInt(o, "until_position", fromPosition + 1, where);
  }
  const issuedAtMs = readInt(o, "issued_at_ms", 0, where);
  const expiresAtMs = readInt(o, "expires_at_ms", issuedAtMs, where);
  const cmd: SteerCommand = {
    id,
    requestId,
    model,
    hook,
    dModel,
    fromPosition,
    untilPosition,
    issuedAtMs,
    expiresAtMs,
    op: parseOp(o.op, dModel, where),
  };
  const monitor = readOptionalName(o, "monitor", where);
  const rule = readOptionalName(o, "rule", where);
  const alertId = readOptionalName(o, "alert_id", where);
  if (monitor !== undefined) cmd.monitor = monitor;
  if (rule !== undefined) cmd.rule = rule;
  if (alertId !== undefined) cmd.alertId = alertId;
  return cmd;
}

/**
 * True when a command received at `nowMs` is past its expiry.
 *
 * @example
 * ```ts
 * import type { SteerCommand } from "./protocol.ts";
 * isExpired({ expiresAtMs: 1000 } as SteerCommand, 1001); // true
 * ```
 */
export function isExpired(cmd: Pick<SteerCommand, "expiresAtMs">, nowMs: number): boolean {
  return nowMs > cmd.expiresAtMs;
}

const ACK_STATUSES: readonly AckStatus[] = ["applied", "rejected", "expired", "not_applied"];

/**
 * Parse an acknowledgement payload.
 *
 * @example
 * ```ts
 * import { encodeAck } from "./encode.ts";
 * parseAck(encodeAck({ id: "c1", requestId: "r1", status: "applied", position: 8 })).position; // 8
 * ```
 */
export function parseAck(data: Uint8Array): SteerAck {
  const o = parseJson(data, "steering acknowledgement");
  const where: Where = {};
  if (o.v !== STEER_VERSION) {
    throw new SteerProtocolError("v", String(STEER_VERSION), showValue(o.v), where);
  }
  const id = readName(o, "id", where);
  where.commandId = id;
  const requestId = readName(o, "request_id", where);
  const status = o.status;
  if (!ACK_STATUSES.includes(status as AckStatus)) {
    throw new SteerProtocolError(
      "status",
      `one of ${ACK_STATUSES.join(", ")}`,
      typeOf(status),
      where,
    );
  }
  const ack: SteerAck = { id, requestId, status: status as AckStatus };
  if (o.position !== undefined) ack.position = readInt(o, "position", 0, where);
  if (o.reason !== undefined) {
    if (typeof o.reason !== "string") {
      throw new SteerProtocolError("reason", "a string", typeOf(o.reason), where);
    }
    ack.reason = o.reason;
  }
  const tap = readOptionalName(o, "tap", where);
  if (tap !== undefined) ack.tap = tap;
  return ack;
}

const VERDICTS: readonly GateVerdict["verdict"][] = ["continue", "steer", "abort", "error"];

/**
 * Parse a gate verdict (a reply to a gated frame), checking every command in it.
 *
 * @example
 * ```ts
 * declare const reply: { data: Uint8Array };
 * declare function stop(): void;
 * const v = parseVerdict(reply.data, { model: "gpt2", hook: "blocks.6.hook_resid_post", dModel: 768 });
 * if (v.verdict === "abort") stop();
 * ```
 */
export function parseVerdict(data: Uint8Array, expect: CommandExpect = {}): GateVerdict {
  const o = parseJson(data, "gate verdict");
  const where: Where = {};
  if (o.v !== STEER_VERSION) {
    throw new SteerProtocolError("v", String(STEER_VERSION), showValue(o.v), where);
  }
  const requestId = readName(o, "request_id", where);
  where.requestId = requestId;
  const seq = readInt(o, "seq", 0, where);
  const verdict = o.verdict;
  if (!VERDICTS.includes(verdict as GateVerdict["verdict"])) {
    throw new SteerProtocolError(
      "verdict",
      `one of ${VERDICTS.join(", ")}`,
      typeOf(verdict),
      where,
    );
  }
  if (!Array.isArray(o.commands)) {
    throw new SteerProtocolError("commands", "an array", typeOf(o.commands), where);
  }
  // one bad command does not spoil the others: it is returned to be acknowledged as rejected
  const commands: SteerCommand[] = [];
  const rejected: SteerProtocolError[] = [];
  o.commands.forEach((c, i) => {
    try {
      commands.push(parseCommand(asObject(c, `commands[${i}]`, "a command object", where), expect));
    } catch (err) {
      if (!(err instanceof SteerProtocolError)) throw err;
      rejected.push(err);
    }
  });
  const v: GateVerdict = { requestId, seq, verdict: verdict as GateVerdict["verdict"], commands };
  if (typeof o.reason === "string") v.reason = o.reason;
  if (rejected.length > 0) v.rejected = rejected;
  return v;
}

/**
 * Whether `data` is, byte for byte, the verdict `encodeVerdict` writes for
 * `continue` without commands or reason, answering `requestId`'s step `seq`:
 * the answer to almost every gated decode step, which a tap can then take
 * without parsing its JSON (1–2 µs a step). False for anything else, which
 * {@linkcode parseVerdict} then reads (a request id outside printable ASCII
 * always goes there).
 *
 * @example
 * ```ts
 * import { encodeVerdict } from "./encode.ts";
 * const data = encodeVerdict({ requestId: "r1", seq: 3, verdict: "continue", commands: [] });
 * isPlainContinue(data, "r1", 3); // true
 * isPlainContinue(data, "r1", 4); // false: another step's answer
 * ```
 */
export function isPlainContinue(data: Uint8Array, requestId: string, seq: number): boolean {
  // what parseVerdict would refuse is left to it, to refuse
  if (!Number.isSafeInteger(seq) || seq < 0) return false;
  if (requestId.length === 0 || requestId.length > MAX_ID) return false;
  // the text encodeVerdict writes, compared as ASCII
  const text = verdictText({ requestId, seq, verdict: "continue", commands: [] });
  if (data.length !== text.length) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7e || data[i] !== c) return false;
  }
  return true;
}
