/**
 * Building blocks of config schemas (zod) whose errors read well: messages
 * that say what was expected and what was found, and unions reported as the
 * option the author meant. They live below both `src/config/` (which turns
 * zod issues into `file:line:col` errors) and the folders that bring their
 * own schema pieces (each sink in `src/sinks/<name>/`).
 *
 * @module
 */
import { z } from "zod";

/**
 * A zod `error` option that says what was expected and what was found, with
 * an optional explanation, for custom checks in config schemas.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * z.number().min(0, { error: expectMessage("a number ≥ 0", "negative thresholds fire on every token") });
 * // "expected a number ≥ 0, found -1; negative thresholds fire on every token"
 * ```
 */
export function expectMessage(
  expected: string,
  why?: string,
): (iss: { input?: unknown }) => string | undefined {
  // A missing key (no input) falls through to the default "missing required key" message.
  return (iss) =>
    iss.input === undefined
      ? undefined
      : `expected ${expected}, found ${describeValue(iss.input)}${why ? `; ${why}` : ""}`;
}

/** Marks the error message of a {@linkcode choiceOf} union: the marker, then its registry key. */
const CHOICE = "\u0001choice:";

/** How to report a failed {@linkcode choiceOf} union. */
export interface ChoiceOptions {
  /** What the value should have been, e.g. `"a condition: {all: [...]}, {any: [...]}, ..."`. */
  expected: string;
  /**
   * Which option the author meant, from the value as written (usually by the
   * keys of a mapping), or -1 when no option is recognisable: then the error
   * is `expected <expected>, found <value>` at the value.
   */
  choose: (value: unknown) => number;
  /** Keys that pick an option, for a "did you mean" hint when a mapping has none of them. */
  keys?: readonly string[];
}

const choices: ChoiceOptions[] = [];

/**
 * A union whose failures are reported as the author sees them: the option
 * they meant (chosen by `opts.choose` from the value) and that option's own
 * problems at their own positions, instead of zod's "invalid input" over
 * every option. Plain `z.union` underneath, so JSON Schema generation sees an
 * `anyOf`.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * const Pool = choiceOf([z.literal("token"), z.strictObject({ max: z.int() })], {
 *   expected: "token or {max: N}",
 *   choose: (v) => typeof v === "string" ? 0 : isMapping(v) && "max" in v ? 1 : -1,
 * });
 * ```
 */
export function choiceOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(
  options: T,
  opts: ChoiceOptions,
): z.ZodUnion<T> {
  const key = choices.push(opts) - 1;
  return z.union(options, { error: () => `${CHOICE}${key}` });
}

/**
 * Whether `v` is a YAML mapping (a plain object, not a list or a scalar).
 *
 * @example
 * ```ts
 * isMapping({ a: 1 }); // true
 * isMapping([1]); // false
 * ```
 */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * Describe a YAML value for an error message, e.g. `the string "hgh"`,
 * `-1`, `a list of 3 item(s)`, `an empty value`.
 *
 * @example
 * ```ts
 * describeValue("2.0"); // 'the string "2.0"'
 * describeValue(null); // "an empty value"
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing (the key is missing)";
  if (value === null) return "an empty value";
  if (typeof value === "string") {
    const s = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `the string ${JSON.stringify(s)}`;
  }
  if (typeof value === "number") {
    if (Number.isNaN(value)) return ".nan";
    if (!Number.isFinite(value)) return value > 0 ? ".inf" : "-.inf";
    return String(value);
  }
  if (typeof value === "boolean") return `the boolean ${value}`;
  if (Array.isArray(value)) return `a list of ${value.length} item(s)`;
  if (value instanceof Date) return `the date ${value.toISOString()}`;
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/**
 * The {@linkcode ChoiceOptions} of the {@linkcode choiceOf} union whose
 * error message is `message`, or undefined when it is not such a message.
 *
 * @example
 * ```ts
 * choiceFromMessage("some other message"); // undefined
 * ```
 */
export function choiceFromMessage(message: string): ChoiceOptions | undefined {
  if (!message.startsWith(CHOICE)) return undefined;
  return choices[Number(message.slice(CHOICE.length))];
}

/** A non-empty string (trimmed). */
export const nonEmpty: z.ZodString = z.string().trim().min(1);

/**
 * An integer in `lo..hi`; the error says what it is for.
 *
 * @example
 * ```ts
 * int(0, 23, "syslog facility; 16 is local0").default(16);
 * ```
 */
export function int(lo: number, hi: number, what: string): z.ZodInt {
  const error = expectMessage(`an integer in ${lo}..${hi} (${what})`);
  return z.int({ error }).min(lo, { error }).max(hi, { error });
}
