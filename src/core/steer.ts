/**
 * Steering protocol v1 (`docs/steering.md`): the commands the sidecar sends a
 * tap to change one request's activations, the acknowledgements a tap sends
 * back, and the verdicts that answer gated frames. This module is the
 * reference: wire encoding, strict parsing with errors that say which field
 * was expected to be what, the arithmetic of each operation, and how a
 * policy's `{ sae, latent }` becomes the vectors a tap needs. Pure: imports
 * nothing outside `src/core`.
 *
 * @module
 */
import { subjectToken } from "./frame/subjects.ts";
import type { SteerAction } from "./policy/ast.ts";
import { saeDOut, type SaeWeights } from "./sae.ts";

/** The protocol version this module writes and the only one it reads. */
export const STEER_VERSION = 1;

/** Longest command id, request id, model or hook name accepted, in characters. */
const MAX_ID = 256;

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

// ---------------------------------------------------------------------------
// Subjects

/**
 * The subject commands for `model`/`hook` go to, on the request's partition:
 * `latentwatch.steer.v1.<model>.<hook>.<partition>` (names as in `tapSubject`).
 *
 * @example
 * ```ts
 * steerSubject("gpt2", "blocks.6.hook_resid_post", 0); // "latentwatch.steer.v1.gpt2.blocks_6_hook_resid_post.0"
 * ```
 */
export function steerSubject(model: string, hook: string, partition = 0): string {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new RangeError(
      `steer subject: partition: expected a non-negative integer, found ${partition}`,
    );
  }
  return `latentwatch.steer.v1.${subjectToken("model", model)}.${
    subjectToken("hook", hook)
  }.${partition}`;
}

/**
 * The filter a tap subscribes to for every partition of `model`/`hook`.
 *
 * @example
 * ```ts
 * steerSubjectFilter("gpt2", "blocks.6.hook_resid_post"); // "latentwatch.steer.v1.gpt2.blocks_6_hook_resid_post.*"
 * ```
 */
export function steerSubjectFilter(model: string, hook: string): string {
  return `latentwatch.steer.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}.*`;
}

/**
 * The subject a tap acknowledges commands on.
 *
 * @example
 * ```ts
 * steerAckSubject("gpt2", "blocks.6.hook_resid_post"); // "latentwatch.steer-ack.v1.gpt2.blocks_6_hook_resid_post"
 * ```
 */
export function steerAckSubject(model: string, hook: string): string {
  return `latentwatch.steer-ack.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}`;
}

/** The filter the sidecar hears every acknowledgement on. */
export const STEER_ACK_FILTER = "latentwatch.steer-ack.v1.>";

// ---------------------------------------------------------------------------
// Vectors on the wire: base64 of little-endian f32

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

// ---------------------------------------------------------------------------
// Encoding

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
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * The message payload of a command.
 *
 * @example
 * ```ts
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
  return utf8.encode(JSON.stringify({
    v: STEER_VERSION,
    request_id: v.requestId,
    seq: v.seq,
    verdict: v.verdict,
    commands: v.commands.map(commandToWire),
    ...(v.reason !== undefined ? { reason: v.reason } : {}),
  }));
}

// ---------------------------------------------------------------------------
// Parsing

type Where = { commandId?: string; requestId?: string };

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `the string ${show(v)}` : typeof v;
}

function show(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/** A number as itself, anything else described. */
function showValue(v: unknown): string {
  return typeof v === "number" ? String(v) : typeOf(v);
}

function parseJson(data: Uint8Array | string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === "string" ? data : utf8Decoder.decode(data));
  } catch (err) {
    throw new SteerProtocolError("payload", `a UTF-8 JSON ${what}`, (err as Error).message, {}, {
      cause: err,
    });
  }
  return asObject(value, "payload", what, {});
}

function asObject(v: unknown, field: string, what: string, where: Where): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new SteerProtocolError(field, what, typeOf(v), where);
  }
  return v as Record<string, unknown>;
}

function name(o: Record<string, unknown>, key: string, where: Where, prefix = ""): string {
  const v = o[key];
  if (typeof v !== "string" || v.length === 0 || [...v].length > MAX_ID) {
    throw new SteerProtocolError(
      prefix + key,
      `a non-empty string of at most ${MAX_ID} characters`,
      typeOf(v),
      where,
    );
  }
  return v;
}

function optionalName(
  o: Record<string, unknown>,
  key: string,
  where: Where,
  prefix = "",
): string | undefined {
  return o[key] === undefined ? undefined : name(o, key, where, prefix);
}

function int(
  o: Record<string, unknown>,
  key: string,
  min: number,
  where: Where,
  prefix = "",
): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw new SteerProtocolError(
      prefix + key,
      `an integer ≥ ${min}`,
      typeOf(v) === "number" ? String(v) : typeOf(v),
      where,
    );
  }
  return v;
}

function finite(o: Record<string, unknown>, key: string, where: Where, prefix = "op."): number {
  const v = o[key];
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new SteerProtocolError(
      prefix + key,
      "a finite number",
      typeOf(v) === "number" ? String(v) : typeOf(v),
      where,
    );
  }
  return v;
}

function latentRef(
  o: Record<string, unknown>,
  where: Where,
  required: boolean,
): LatentRef | undefined {
  if (o.latent === undefined && !required) return undefined;
  const l = asObject(o.latent, "op.latent", "an object {sae, index}", where);
  return {
    sae: name(l, "sae", where, "op.latent."),
    index: int(l, "index", 0, where, "op.latent."),
  };
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
        b: finite(r, "b", where, "op.read."),
        threshold: finite(r, "threshold", where, "op.read."),
      };
      const latent = latentRef(o, where, true)!;
      const direction = vec("direction", o.direction);
      return kind === "clamp"
        ? { kind, value: finite(o, "value", where), latent, read, direction }
        : { kind, latent, read, direction };
    }
    case "add": {
      const latent = latentRef(o, where, false);
      return {
        kind,
        scale: finite(o, "scale", where),
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
      return { kind, max: finite(o, "max", where), direction, ...(latent ? { latent } : {}) };
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
  const id = name(o, "id", where);
  const requestId = name(o, "request_id", where);
  const model = name(o, "model", where);
  const hook = name(o, "hook", where);
  const dModel = int(o, "d_model", 1, where);
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
  const fromPosition = int(o, "from_position", 0, where);
  let untilPosition: number | null = null;
  if (o.until_position !== null && o.until_position !== undefined) {
    untilPosition = int(o, "until_position", fromPosition + 1, where);
  }
  const issuedAtMs = int(o, "issued_at_ms", 0, where);
  const expiresAtMs = int(o, "expires_at_ms", issuedAtMs, where);
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
  const monitor = optionalName(o, "monitor", where);
  const rule = optionalName(o, "rule", where);
  const alertId = optionalName(o, "alert_id", where);
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
 * parseAck(encodeAck({ id: "c1", requestId: "r1", status: "applied", position: 8 })).position; // 8
 * ```
 */
export function parseAck(data: Uint8Array): SteerAck {
  const o = parseJson(data, "steering acknowledgement");
  const where: Where = {};
  if (o.v !== STEER_VERSION) {
    throw new SteerProtocolError("v", String(STEER_VERSION), showValue(o.v), where);
  }
  const id = name(o, "id", where);
  where.commandId = id;
  const requestId = name(o, "request_id", where);
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
  if (o.position !== undefined) ack.position = int(o, "position", 0, where);
  if (o.reason !== undefined) {
    if (typeof o.reason !== "string") {
      throw new SteerProtocolError("reason", "a string", typeOf(o.reason), where);
    }
    ack.reason = o.reason;
  }
  const tap = optionalName(o, "tap", where);
  if (tap !== undefined) ack.tap = tap;
  return ack;
}

const VERDICTS: readonly GateVerdict["verdict"][] = ["continue", "steer", "abort", "error"];

/**
 * Parse a gate verdict (a reply to a gated frame), checking every command in it.
 *
 * @example
 * ```ts
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
  const requestId = name(o, "request_id", where);
  where.requestId = requestId;
  const seq = int(o, "seq", 0, where);
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

// ---------------------------------------------------------------------------
// Arithmetic

/** `pre = w·x + b` over row `row` of `x` (`dModel` wide), accumulated in f64. */
function dotRow(w: Float32Array, x: Float32Array, offset: number): number {
  let s = 0;
  for (let j = 0; j < w.length; j++) s += w[j] * x[offset + j];
  return s;
}

/**
 * The latent's value on one token: `pre = w·x + b`, `pre` when above the threshold, else 0.
 *
 * @example
 * ```ts
 * readLatent({ w: new Float32Array([1, 0]), b: -1, threshold: 0 }, new Float32Array([3, 9])); // 2
 * ```
 */
export function readLatent(read: LatentRead, x: Float32Array, offset = 0): number {
  const pre = dotRow(read.w, x, offset) + read.b;
  return pre > read.threshold ? pre : 0;
}

/**
 * Apply one operation to row `row` of `x` (`[tokens, dModel]`) in place, as
 * `docs/steering.md` defines it. Returns false when the row is unchanged
 * (an abort, a cap below its max, an ablation of an inactive latent).
 *
 * @example
 * ```ts
 * const x = new Float32Array([3, 0]);
 * applyOp({ kind: "cap", max: 1, direction: new Float32Array([1, 0]) }, x, 0, 2); // true; x = [1, 0]
 * ```
 */
export function applyOp(op: SteerOp, x: Float32Array, row: number, dModel: number): boolean {
  const o = row * dModel;
  let coef: number;
  let dir: Float32Array;
  switch (op.kind) {
    case "clamp":
      coef = op.value - readLatent(op.read, x, o);
      dir = op.direction;
      break;
    case "ablate":
      coef = -readLatent(op.read, x, o);
      dir = op.direction;
      break;
    case "add":
      coef = op.scale;
      dir = op.vector;
      break;
    case "cap": {
      const p = dotRow(op.direction, x, o);
      if (!(p > op.max)) return false;
      coef = op.max - p;
      dir = op.direction;
      break;
    }
    case "abort":
      return false;
  }
  if (coef === 0) return false;
  for (let j = 0; j < dModel; j++) x[o + j] += coef * dir[j];
  return true;
}

// ---------------------------------------------------------------------------
// Resolving a policy's steer action into vectors

/**
 * Why latent-based steering cannot be expressed for `sae` (null when it can).
 *
 * @example
 * ```ts
 * steerableProblem({ ...sae, normalize: "layer_norm" }); // "its input is normalised per token (layer_norm) ..."
 * ```
 */
export function steerableProblem(sae: SaeWeights): string | null {
  if ((sae.kind ?? "sae") === "transcoder") {
    return "it is a transcoder: its decoder writes another hook than the one it reads";
  }
  if ((sae.normalize ?? "none") !== "none") {
    return `its input is normalised per token (${sae.normalize}), so a latent is not an affine read-out of the activation`;
  }
  if (sae.architecture === "gated") {
    return "it is a gated SAE: a latent's value depends on a separate gate, not one affine read-out";
  }
  return null;
}

/**
 * The read-out and decoder direction of latent `index` of `sae` (see
 * `docs/steering.md`): `w` the encoder column, `b` the encoder bias (minus
 * `w·b_dec` when the SAE subtracts `b_dec` from its input), the JumpReLU
 * threshold (0 otherwise), and the decoder row.
 *
 * @example
 * ```ts
 * const { read, direction } = latentVectors(sae, "demo-res", 0);
 * ```
 */
export function latentVectors(
  sae: SaeWeights,
  saeId: string,
  index: number,
): { read: LatentRead; direction: Float32Array } {
  const problem = steerableProblem(sae);
  if (problem) {
    throw new SteerResolveError(`SAE ${saeId}: cannot steer by latent: ${problem}`);
  }
  if (!Number.isSafeInteger(index) || index < 0 || index >= sae.dSae) {
    throw new SteerResolveError(
      `SAE ${saeId}: latent: expected an index in [0, ${sae.dSae}), found ${index}`,
    );
  }
  const { dIn, dSae } = sae;
  const dOut = saeDOut(sae);
  const w = new Float32Array(dIn);
  for (let j = 0; j < dIn; j++) w[j] = sae.wEnc[j * dSae + index];
  let b = sae.bEnc[index];
  if (sae.applyBDecToInput) {
    let s = 0;
    for (let j = 0; j < dIn; j++) s += w[j] * sae.bDec[j];
    b -= s;
  }
  const threshold = sae.architecture === "jumprelu" && sae.threshold ? sae.threshold[index] : 0;
  const direction = sae.wDec.slice(index * dOut, (index + 1) * dOut);
  return { read: { w, b, threshold }, direction };
}

function unit(v: Float32Array, what: string): Float32Array {
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  if (!(norm > 0) || !Number.isFinite(norm)) {
    throw new SteerResolveError(`${what}: expected a non-zero direction, found norm ${norm}`);
  }
  return v.map((x) => x / norm);
}

/**
 * Turn a policy's steer action into an operation with its vectors, for a
 * hook `dModel` wide. `saes` maps SAE ids to loaded weights. Throws
 * {@linkcode SteerResolveError} naming the SAE and what is wrong.
 *
 * @example
 * ```ts
 * const op = resolveSteerAction({ kind: "clamp", sae: "demo-res", latent: 0, value: 0 }, saes, 64);
 * ```
 */
export function resolveSteerAction(
  action: SteerAction,
  saes: ReadonlyMap<string, SaeWeights>,
  dModel: number,
): SteerOp {
  const sae = (id: string): SaeWeights => {
    const s = saes.get(id);
    if (!s) {
      throw new SteerResolveError(
        `steer ${action.kind}: expected the id of a loaded SAE (${
          [...saes.keys()].join(", ") || "none"
        }), found ${JSON.stringify(id)}`,
      );
    }
    if (s.dIn !== dModel) {
      throw new SteerResolveError(
        `SAE ${id}: expected d_in ${dModel} (the hook's width), found ${s.dIn}`,
      );
    }
    return s;
  };
  const direction = (d: { sae: string; latent: number } | { vector: number[] }, what: string) => {
    if ("vector" in d) {
      if (d.vector.length !== dModel) {
        throw new SteerResolveError(
          `${what}: expected a vector of ${dModel} values (the hook's width), found ${d.vector.length}`,
        );
      }
      return { vector: Float32Array.from(d.vector) };
    }
    return {
      vector: latentVectors(sae(d.sae), d.sae, d.latent).direction,
      latent: { sae: d.sae, index: d.latent },
    };
  };
  switch (action.kind) {
    case "clamp":
    case "ablate": {
      const { read, direction } = latentVectors(sae(action.sae), action.sae, action.latent);
      const latent = { sae: action.sae, index: action.latent };
      return action.kind === "clamp"
        ? { kind: "clamp", value: action.value, latent, read, direction }
        : { kind: "ablate", latent, read, direction };
    }
    case "add": {
      const d = direction(action.direction, "steer add");
      return {
        kind: "add",
        scale: action.scale,
        vector: d.vector,
        ...(d.latent ? { latent: d.latent } : {}),
      };
    }
    case "cap": {
      const d = direction(action.direction, "steer cap");
      return {
        kind: "cap",
        max: action.max,
        direction: unit(d.vector, "steer cap"),
        ...(d.latent ? { latent: d.latent } : {}),
      };
    }
    case "abort":
      return { kind: "abort", ...(action.reason !== undefined ? { reason: action.reason } : {}) };
  }
}
