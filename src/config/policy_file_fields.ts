/**
 * The fields policy files share: the patterns of rule ids, encoder ids and
 * names, and the zod schemas of names, encoder ids, numbers, latent indices
 * (below the `latentIndex` limit) and value sets, each with the message a
 * person reads when a value does not fit. The v1 and v2 schemas
 * (`policy_file_schema.ts`) and the conditions (`policy_file_conditions.ts`)
 * are built from them.
 *
 * @module
 */
import { z } from "zod";
import { DEFAULT_POLICY_LIMITS } from "../core/policy/limits.ts";
import { choiceOf, expectMessage } from "./yaml_source.ts";

/** Rule ids: lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const RULE_ID_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;

/** SAE ids as named in a monitor config. */
export const SAE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Names of lists and macros: a letter or `_`, then letters, digits, `_`, `.` or `-`. */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** What a latent index is, as error messages say it. */
export const LATENT_TEXT = "an integer latent index ≥ 0";

/** The largest latent or score index a file may name, plus one (limit `latentIndex`). */
export const INDEX_LIMIT = DEFAULT_POLICY_LIMITS.latentIndex;

/**
 * The error of an index at or above {@linkcode INDEX_LIMIT}: indices above
 * the limit are refused by the schema, so nothing is ever sized by one.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * const Score = z.int().max(INDEX_LIMIT - 1, belowLimit("a score index"));
 * Score.safeParse(INDEX_LIMIT).success; // false
 * ```
 */
export function belowLimit(what: string) {
  return { error: expectMessage(`${what} below ${INDEX_LIMIT} (limit latentIndex)`) };
}

const NAME_TEXT = "a name of letters, digits, '_', '.' or '-' starting with a letter or '_'";

/**
 * A name of a list or macro ({@linkcode NAME_PATTERN}); `what` says which in
 * the error.
 *
 * @example
 * ```ts
 * nameSchema("a list").parse("redteam_tenants"); // "redteam_tenants"
 * nameSchema("a list").safeParse("1st").success; // false
 * ```
 */
export function nameSchema(what: string) {
  return z.string({ error: expectMessage(`${what}: ${NAME_TEXT}`) }).regex(NAME_PATTERN, {
    error: expectMessage(`${what}: ${NAME_TEXT}`),
  });
}

/**
 * The id of an SAE or a probe from the monitor config ({@linkcode SAE_ID_PATTERN}).
 *
 * @example
 * ```ts
 * encoderIdSchema("an SAE").parse("res12"); // "res12"
 * ```
 */
export function encoderIdSchema(what: "an SAE" | "a probe") {
  return z.string().regex(SAE_ID_PATTERN, {
    error: expectMessage(`${what} id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)`),
  });
}

/**
 * A number; `what` is the error's "expected …".
 *
 * @example
 * ```ts
 * numberSchema().parse(0.5); // 0.5
 * ```
 */
export function numberSchema(what = "a number") {
  return z.number({ error: expectMessage(what) });
}

/**
 * A number > 0; `what` is the error's "expected …".
 *
 * @example
 * ```ts
 * positiveSchema("a number of seconds > 0").safeParse(0).success; // false
 * ```
 */
export function positiveSchema(what: string) {
  const error = expectMessage(what);
  return z.number({ error }).positive({ error });
}

/**
 * An integer ≥ `min`; `what` is the error's "expected …".
 *
 * @example
 * ```ts
 * wholeSchema("a whole number of tokens ≥ 1", 1).parse(64); // 64
 * ```
 */
export function wholeSchema(what: string, min: number) {
  const error = expectMessage(what);
  return z.int({ error }).min(min, { error });
}

/** A latent (or score) index: an integer ≥ 0 below {@linkcode INDEX_LIMIT}. */
export const LatentIndexSchema = wholeSchema(LATENT_TEXT, 0).max(
  INDEX_LIMIT - 1,
  belowLimit("a latent index"),
);

/**
 * `[a, b]` (literal values) or `name` (a `list`).
 *
 * @example
 * ```ts
 * const Latents = valueSetSchema(LatentIndexSchema, "latent indices");
 * Latents.parse([1, 2]); // [1, 2]
 * Latents.parse("my_list"); // "my_list"
 * ```
 */
export function valueSetSchema<T extends z.ZodType>(item: T, itemText: string) {
  return choiceOf([z.array(item), nameSchema("the name of a list")], {
    expected: `a list of ${itemText} ([a, b]) or the name of a list`,
    choose: (v) => Array.isArray(v) ? 0 : typeof v === "string" ? 1 : -1,
  });
}

/** A string or a number: an item of a list, a tenant, a model, a metadata value. */
export const ScalarSchema = choiceOf([z.string(), z.number()], {
  expected: "a string or a number",
  choose: () => -1,
});
