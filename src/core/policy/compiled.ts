/**
 * The shapes compile produces and the engine runs: what compile knows of an
 * encoder ({@linkcode SignalInfo}), and a compiled set, its rules, their
 * pooled tests, conditions and exceptions. Types only.
 *
 * @module
 */
import type { Pool, RuleDef, Scope, SourceRef, SteerAction } from "./ast.ts";
import type { EncoderIndex } from "./encoder_index.ts";
import type { PolicyWarning } from "./problems.ts";

/** What compile knows about an encoder the monitor loads. */
export interface SignalInfo {
  /** An SAE (sparse latents, ≥ 0) or a linear probe (a dense score per token, any sign). */
  kind: "sae" | "probe";
  /** Latents (SAE) or scores (probe) per token. */
  dSae: number;
  /** Human labels by latent index, for `label:` signals and for alerts. */
  labels?: ReadonlyMap<number, string>;
  /**
   * SAEs: the cosine of every latent's decoder row with latent `latent`'s
   * (`[dSae]`), for `family` tests; filled by the adapter that loads the
   * SAE. Without it a family test is a compile problem.
   */
  decoderCosines?: (latent: number) => ArrayLike<number>;
}

/** A family test's members with their weights (decoder cosine with the concept). */
export interface CompiledFamily {
  readonly members: readonly number[];
  readonly weights: readonly number[];
  readonly combine: "sum" | "max";
}

/** One pooled signal a rule reads (tests on the same signal and pooling share it). */
export interface CompiledTest {
  readonly encoder: string;
  readonly kind: "latent" | "probe";
  readonly index: number;
  readonly label?: string;
  readonly pool: Pool;
  /** A family test: `index` is the concept's latent; the value is the family's (core/family.ts). */
  readonly family?: CompiledFamily;
  /** Whether the signal being present on a token makes the rule evaluate there. */
  readonly trigger: boolean;
}

/** A condition with names resolved; leaves point into the rule's `tests`. */
export type CompiledCondition =
  | {
    kind: "test";
    test: number;
    /** Index of this leaf's named condition in {@linkcode CompiledRule.conditions}. */
    cond: number;
    op: "above" | "below";
    threshold: number;
    source: SourceRef;
  }
  | { kind: "all" | "any"; of: CompiledCondition[]; source: SourceRef }
  | { kind: "not"; of: CompiledCondition; source: SourceRef };

/**
 * One named condition of a rule: a leaf signal test as written (a macro's
 * leaf used twice in a rule is one condition), in the order the rule's
 * condition reads them with macros expanded (see `condition_names.ts`).
 */
export interface RuleCondition {
  /** Written `name:`, or the default name (unique within the rule). */
  readonly name: string;
  /** Index of its pooled signal in {@linkcode CompiledRule.tests}. */
  readonly test: number;
  readonly op: "above" | "below";
  readonly threshold: number;
  readonly source: SourceRef;
}

/**
 * What a condition reads while the engine evaluates it at one token: the
 * pooled value of each test, and the witness, the first trigger test found
 * holding (for the value and signal an alert reports).
 */
export interface ConditionEnv {
  read(test: number): number;
  witness: number;
  witnessValue: number;
}

/** An exception with its value sets resolved (values compared as strings). */
export interface CompiledException {
  readonly name?: string;
  readonly tenant?: ReadonlySet<string>;
  readonly model?: ReadonlySet<string>;
  readonly metadata?: readonly (readonly [string, ReadonlySet<string>])[];
}

/** A rule ready to run. */
export interface CompiledRule {
  readonly def: RuleDef;
  readonly id: string;
  /** Position in {@linkcode CompiledPolicySet.rules}. */
  readonly index: number;
  /** Hash of the compiled content (not of where it was written): equal hashes, equal behaviour. */
  readonly hash: string;
  readonly scope: Scope;
  readonly tests: readonly CompiledTest[];
  readonly condition: CompiledCondition;
  /** Its leaf signal tests, named (alerts list them; templates read `{cond.<name>.<field>}`). */
  readonly conditions: readonly RuleCondition[];
  /** Evaluate the condition; sets `env.witness` when it holds. */
  readonly holds: (env: ConditionEnv) => boolean;
  readonly exceptions: readonly CompiledException[];
  /** Whether the rule raises an alert (it may only steer). */
  readonly alert: boolean;
  readonly steer: readonly SteerAction[];
  /** `meta.<key>` names its description and dedup key read. */
  readonly metaKeys: readonly string[];
}

/** Policy files compiled against a monitor's encoders. */
export interface CompiledPolicySet {
  /** Enabled rules, in file order. */
  readonly rules: readonly CompiledRule[];
  /** Encoders any enabled rule reads, sorted. */
  readonly encoderIds: readonly string[];
  readonly warnings: readonly PolicyWarning[];
  /** Hash of every rule definition, for alerts: equal versions, equal behaviour. */
  readonly version: string;
  readonly index: ReadonlyMap<string, EncoderIndex>;
  /** Sorted latents of `encoderId` any test of an enabled rule reads (a fresh copy; empty for an unknown id). */
  watchedLatents(encoderId: string): Uint32Array;
}
