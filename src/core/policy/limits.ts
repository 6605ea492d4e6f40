/**
 * Limits on what a policy set may ask of the parser and the compiler, so that
 * no policy file, however large or strange, can stall the sidecar or exhaust
 * its memory: a file beyond a limit is refused with a `file:line:col` error
 * naming the limit, what it allows and what was found
 * (`docs/policies.md#limits`).
 *
 * | limit            | default    | what it bounds                                                    |
 * | ---------------- | ---------- | ----------------------------------------------------------------- |
 * | `fileBytes`      | 8 MiB      | size of one policy file                                           |
 * | `depth`          | 64         | YAML nesting (mappings and lists inside each other; top level 1)  |
 * | `macros`         | 20,000     | macros across every file of a set                                 |
 * | `listItems`      | 10,000     | items of one list (`lists[].items`, `latents: [...]`, exceptions) |
 * | `latentIndex`    | 2^31       | latent and score indices are below it (and below `d_sae`)         |
 * | `conditionDepth` | 256        | nesting of one rule's condition with its macros expanded          |
 * | `conditionNodes` | 1,000,000  | tests, `all`, `any`, `not` of every rule with macros expanded     |
 *
 * `conditionDepth` counts levels after nested `all`s (and nested `any`s)
 * are merged, so a chain of macros each adding a branch to an `any` stays
 * two levels deep however long it is.
 *
 * @module
 */

/** The limits; see the module doc for what each bounds. */
export interface PolicyLimits {
  /** Size of one policy file, in bytes (UTF-16 code units of its text). */
  readonly fileBytes: number;
  /** YAML nesting depth: a mapping or list inside another is one level more; the top level is 1. */
  readonly depth: number;
  /** Macros across every file of a policy set. */
  readonly macros: number;
  /** Items of one list: a `lists:` entry, a literal `latents: [...]`, an exception's value list. */
  readonly listItems: number;
  /** Latent and score indices must be below this (and below the encoder's width when known). */
  readonly latentIndex: number;
  /** Nesting of one rule's condition with macros expanded and nested `all`/`any` merged. */
  readonly conditionDepth: number;
  /** Conditions (tests, `all`, `any`, `not`) of every rule together, with macros expanded. */
  readonly conditionNodes: number;
}

/**
 * The default limits: far above any policy set written by people (a chain of
 * 10,000 macros compiles), far below what would stall a reload.
 *
 * @example
 * ```ts
 * DEFAULT_POLICY_LIMITS.depth; // 64
 * ```
 */
export const DEFAULT_POLICY_LIMITS: PolicyLimits = Object.freeze({
  fileBytes: 8 * 1024 * 1024,
  depth: 64,
  macros: 20_000,
  listItems: 10_000,
  latentIndex: 2 ** 31,
  conditionDepth: 256,
  conditionNodes: 1_000_000,
});

/** A limit override is not a positive integer. */
export class PolicyLimitsError extends RangeError {
  override name = "PolicyLimitsError";
}

/**
 * The default limits with `overrides` applied. Throws
 * {@linkcode PolicyLimitsError} when an override is not a positive integer.
 *
 * @example
 * ```ts
 * policyLimits({ macros: 100 }).macros; // 100
 * policyLimits().depth; // 64
 * ```
 */
export function policyLimits(overrides: Partial<PolicyLimits> = {}): PolicyLimits {
  const out = { ...DEFAULT_POLICY_LIMITS, ...overrides };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new PolicyLimitsError(`policy limit '${k}': expected a positive integer, found ${v}`);
    }
  }
  return out;
}

/**
 * How a count beyond a limit reads in a message: the number, or "more than
 * N" when it was only bounded (an expansion that overflowed).
 *
 * @example
 * ```ts
 * foundCount(Infinity, 10); // "more than 10"
 * foundCount(12, 10); // "12"
 * ```
 */
export function foundCount(n: number, limit: number): string {
  return Number.isSafeInteger(n) ? String(n) : `more than ${limit}`;
}
