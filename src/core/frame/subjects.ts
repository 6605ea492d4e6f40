/**
 * Frame names, subjects and partitions: which names a frame may carry
 * (model, hook, request id, tenant), the NATS subject a tap publishes a
 * model/hook's frames on, and the partition a request's frames go to.
 * Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { FrameError, MAX_NAME_LENGTH, show, type Where } from "./format.ts";
// deno-lint-ignore no-control-regex
const NOT_PRINTABLE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

/**
 * Names found valid lately. A tap checks its model, hook and request id on
 * every frame it sends, and the sidecar again on every frame it receives:
 * the same few strings, each check two regular expressions and a walk over
 * the code points. Only valid names are kept, at most
 * {@linkcode VALID_NAMES_KEPT}, all forgotten at once past that.
 */
const validNames = new Set<string>();
/** How many valid names {@linkcode nameProblem} remembers. */
const VALID_NAMES_KEPT = 4096;

/** Why `value` is not a valid name, or null when it is. */
export function nameProblem(value: string): string | null {
  if (validNames.has(value)) return null;
  if (value.length === 0) return "empty";
  if (NOT_PRINTABLE.test(value)) return "contains a control character";
  if (/^\s|\s$/u.test(value)) return "has leading or trailing whitespace";
  let n = 0;
  for (const _ of value) n++;
  if (n > MAX_NAME_LENGTH) return `${n} characters`;
  if (validNames.size >= VALID_NAMES_KEPT) validNames.clear();
  validNames.add(value);
  return null;
}

/** What a name is expected to be, as error messages say it. */
export const NAME_EXPECTED =
  `a non-empty printable name of at most ${MAX_NAME_LENGTH} characters, no surrounding whitespace`;

/** `value` when it is a valid name; else throws {@linkcode FrameError} on `field`. */
export function checkName(field: string, value: unknown, where: Where): string {
  if (typeof value !== "string") {
    throw new FrameError(field, NAME_EXPECTED, typeof value, where);
  }
  const problem = nameProblem(value);
  if (problem !== null) {
    throw new FrameError(field, NAME_EXPECTED, `${show(value)} (${problem})`, where);
  }
  return value;
}

/**
 * Make a name one NATS subject token: every code point outside
 * `[A-Za-z0-9_-]` (dots, slashes, spaces, wildcards, non-ASCII) becomes `_`.
 * Distinct names can share a token (`blocks.6` and `blocks_6`): the subject
 * routes, the `Lw-Model`/`Lw-Hook` headers identify.
 */
export function subjectToken(field: string, name: string): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new FrameError(field, "a non-empty name", show(name), {});
  }
  return name.replace(/[^A-Za-z0-9_-]/gu, "_");
}

/**
 * The subject a tap publishes frames of `model`/`hook` on:
 * `latentwatch.tap.v1.<model>.<hook>.<partition>`. Each name becomes a single
 * subject token, every code point outside `[A-Za-z0-9_-]` replaced by `_`
 * (so `blocks.6.hook_resid_post` becomes `blocks_6_hook_resid_post`).
 * `partition` (default 0) is {@linkcode partitionOf} the request id.
 *
 * @example
 * ```ts
 * tapSubject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3);
 * // "latentwatch.tap.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3"
 * ```
 */
export function tapSubject(model: string, hook: string, partition = 0): string {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new RangeError(
      `tap subject: partition: expected a non-negative integer, found ${partition}`,
    );
  }
  return `latentwatch.tap.v1.${subjectToken("model", model)}.${
    subjectToken("hook", hook)
  }.${partition}`;
}

/**
 * The subscription filter matching every partition of `model`/`hook`:
 * `latentwatch.tap.v1.<model>.<hook>.*` (names sanitised as in
 * {@linkcode tapSubject}).
 *
 * @example
 * ```ts
 * tapSubjectFilter("gpt2", "blocks.6.hook_resid_post");
 * // "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.*"
 * ```
 */
export function tapSubjectFilter(model: string, hook: string): string {
  return `latentwatch.tap.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}.*`;
}

const utf8 = new TextEncoder();

/**
 * The partition a request's frames go to: FNV-1a (32-bit) of the request id's
 * UTF-8 bytes, modulo `partitions`. Stable across processes and languages, so
 * every frame of a request lands on the same subject and the same sidecar.
 *
 * @example
 * ```ts
 * partitionOf("a", 1000); // 220 (FNV-1a("a") = 0xe40c292c = 3826002220)
 * ```
 */
export function partitionOf(requestId: string, partitions: number): number {
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions: expected a positive integer, found ${partitions}`);
  }
  if (partitions === 1) return 0; // anything modulo 1 (the tap's default, on every publish)
  let h = 0x811c9dc5;
  for (const byte of utf8.encode(requestId)) {
    h = Math.imul(h ^ byte, 0x01000193);
  }
  return (h >>> 0) % partitions;
}
