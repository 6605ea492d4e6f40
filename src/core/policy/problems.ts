/**
 * Compile problems and lint warnings: their machine-readable codes, the
 * `file:line[:col]: [rule 'id': ]reason` line each is shown as, and
 * {@linkcode PolicyCompileError}, which carries every problem a set has.
 *
 * @module
 */
import type { SourceRef } from "./ast.ts";
import { oneLine } from "../one_line.ts";

/** Machine-readable kinds of compile problems. */
export type ProblemCode =
  | "duplicate-rule"
  | "duplicate-macro"
  | "duplicate-list"
  | "duplicate-condition-name"
  | "unknown-encoder"
  | "wrong-encoder-kind"
  | "latent-range"
  | "latent-index"
  | "limit"
  | "unknown-label"
  | "ambiguous-label"
  | "no-labels"
  | "unknown-macro"
  | "macro-cycle"
  | "unknown-list"
  | "list-item"
  | "threshold"
  | "pool"
  | "fires-every-token"
  | "no-trigger"
  | "empty-condition"
  | "steer"
  | "throttle"
  | "family"
  | "no-decoder";

/** Machine-readable kinds of lint warnings. */
export type WarningCode =
  | "unused-macro"
  | "unused-list"
  | "disabled-rule"
  | "never-fires"
  | "always-holds"
  | "no-actions"
  | "unknown-placeholder"
  | "steer-throttled";

/** One problem (or warning) with where it was written. */
export interface PolicyProblem<C extends string = ProblemCode> {
  source: SourceRef;
  /** The rule it is about, when it is about one. */
  rule?: string;
  reason: string;
  code: C;
}

/** A lint warning: the set compiles, but something is likely not what the author meant. */
export type PolicyWarning = PolicyProblem<WarningCode>;

export function where(s: SourceRef): string {
  return `${s.file}:${s.line}${s.col !== undefined ? `:${s.col}` : ""}`;
}

/**
 * Format a problem or warning as one `file:line[:col]: [rule 'id': ]reason` line.
 *
 * @example
 * ```ts
 * formatProblem({ source: { file: "p.yaml", line: 3 }, rule: "pi", reason: "bad", code: "threshold" });
 * // "p.yaml:3: rule 'pi': bad"
 * ```
 */
export function formatProblem(p: PolicyProblem<string>): string {
  // one line, whatever the reason quotes (see oneLine in src/config/errors.ts)
  const text = `${p.rule !== undefined ? `rule '${p.rule}': ` : ""}${p.reason}`;
  return `${where(p.source)}: ${oneLine(text)}`;
}

/**
 * Policy files do not compile against the monitor's encoders. The message is
 * one {@linkcode formatProblem} line per problem; `problems` keeps every one
 * (compile does not stop at the first), `warnings` the lint warnings found too.
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * import { compilePolicySet, type SignalInfo } from "./compile.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
 * try { compilePolicySet(files, signals); } catch (e) {
 *   if (e instanceof PolicyCompileError) for (const p of e.problems) console.error(formatProblem(p));
 * }
 * ```
 */
export class PolicyCompileError extends TypeError {
  override name = "PolicyCompileError";
  readonly problems: readonly PolicyProblem[];
  readonly warnings: readonly PolicyWarning[];
  constructor(problems: readonly PolicyProblem[], warnings: readonly PolicyWarning[] = []) {
    super(problems.map(formatProblem).join("\n"));
    this.problems = problems;
    this.warnings = warnings;
  }
}
