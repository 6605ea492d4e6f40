/**
 * Reading the fields of a steering message strictly, as ./parse.ts does for
 * commands, acknowledgements and verdicts: each reader returns the value or
 * throws a {@linkcode SteerProtocolError} that names the field, what was
 * expected and what was found (the found value described, long text cut at 60
 * characters). Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { SteerProtocolError } from "./protocol.ts";

/** Longest command id, request id, model or hook name accepted, in characters. */
export const MAX_ID = 256;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The command and request a problem is reported against, when they could be read. */
export type Where = { commandId?: string; requestId?: string };

/**
 * A value described for an error message: `null`, `an array`, `the string "…"`
 * or its `typeof`.
 *
 * @example
 * ```ts
 * typeOf("gpt2"); // 'the string "gpt2"'
 * typeOf([1]); // "an array"
 * typeOf(3); // "number"
 * ```
 */
export function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `the string ${show(v)}` : typeof v;
}

/**
 * A value as quoted JSON text, cut to 57 characters and `...` when longer than 60.
 *
 * @example
 * ```ts
 * show("gpt2"); // '"gpt2"'
 * show({ a: 1 }); // '"{\"a\":1}"'
 * ```
 */
export function show(v: unknown): string {
  const s = typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 57)}...` : s);
}

/**
 * A number as itself, anything else described.
 *
 * @example
 * ```ts
 * showValue(2); // "2"
 * showValue("2"); // 'the string "2"'
 * ```
 */
export function showValue(v: unknown): string {
  return typeof v === "number" ? String(v) : typeOf(v);
}

/**
 * A payload (UTF-8 bytes or text) read as a JSON object; `what` names it in the error.
 *
 * @example
 * ```ts
 * parseJson(new TextEncoder().encode('{"v":1}'), "gate verdict"); // { v: 1 }
 * ```
 */
export function parseJson(data: Uint8Array | string, what: string): Record<string, unknown> {
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

/**
 * `v` as an object (not null, not an array); otherwise the error says `field` expected `what`.
 *
 * @example
 * ```ts
 * asObject({ sae: "s" }, "op.latent", "an object {sae, index}", {}); // { sae: "s" }
 * ```
 */
export function asObject(
  v: unknown,
  field: string,
  what: string,
  where: Where,
): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new SteerProtocolError(field, what, typeOf(v), where);
  }
  return v as Record<string, unknown>;
}

/**
 * `o[key]` as a non-empty string of at most {@linkcode MAX_ID} characters;
 * `prefix` goes before `key` in the error's field.
 *
 * @example
 * ```ts
 * readName({ model: "gpt2" }, "model", {}); // "gpt2"
 * ```
 */
export function readName(
  o: Record<string, unknown>,
  key: string,
  where: Where,
  prefix = "",
): string {
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

/**
 * Like {@linkcode name}, but undefined when `o[key]` is absent.
 *
 * @example
 * ```ts
 * readOptionalName({}, "rule", {}); // undefined
 * readOptionalName({ rule: "r1" }, "rule", {}); // "r1"
 * ```
 */
export function readOptionalName(
  o: Record<string, unknown>,
  key: string,
  where: Where,
  prefix = "",
): string | undefined {
  return o[key] === undefined ? undefined : readName(o, key, where, prefix);
}

/**
 * `o[key]` as a safe integer of at least `min`.
 *
 * @example
 * ```ts
 * readInt({ seq: 3 }, "seq", 0, {}); // 3
 * ```
 */
export function readInt(
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

/**
 * `o[key]` as a finite number; the field is named `op.<key>` unless `prefix` says otherwise.
 *
 * @example
 * ```ts
 * readFinite({ scale: 0.5 }, "scale", {}); // 0.5
 * ```
 */
export function readFinite(
  o: Record<string, unknown>,
  key: string,
  where: Where,
  prefix = "op.",
): number {
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
