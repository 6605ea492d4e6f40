/**
 * Configuration errors with positions: every problem found in a file (YAML
 * syntax, schema, cross-references) becomes one {@linkcode ConfigIssue}, and a
 * {@linkcode ConfigError} carries all of them so a person sees every problem
 * at once, each as `file:line:col: reason`.
 *
 * @module
 */

import { oneLine } from "../core/one_line.ts";

export { oneLine };

/** One problem at one place in a configuration file. Lines and columns are 1-based. */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** What was expected and what was found, e.g. `expected an integer ≥ 0, found -1`. */
  reason: string;
}

/**
 * Format an issue the way compilers do: `file:line:col: reason`.
 *
 * @example
 * ```ts
 * formatIssue({ file: "a.yaml", line: 3, col: 7, reason: "unknown key 'foo'" });
 * // "a.yaml:3:7: unknown key 'foo'"
 * ```
 */
export function formatIssue(issue: ConfigIssue): string {
  return `${issue.file}:${issue.line}:${issue.col}: ${oneLine(issue.reason)}`;
}

/**
 * A configuration file is invalid. `file`, `line`, `col` and `reason` describe
 * the first problem (in file order); `issues` lists all of them. The message
 * is one `file:line:col: reason` line per issue.
 *
 * @example
 * ```ts
 * const err = new ConfigError([{ file: "m.yaml", line: 2, col: 1, reason: "unknown key 'x'" }]);
 * err.message; // "m.yaml:2:1: unknown key 'x'"
 * err instanceof TypeError; // true
 * ```
 */
export class ConfigError extends TypeError {
  /** Every problem found, sorted by file, line and column. */
  readonly issues: readonly ConfigIssue[];
  /** File of the first issue. */
  readonly file: string;
  /** Line of the first issue (1-based). */
  readonly line: number;
  /** Column of the first issue (1-based). */
  readonly col: number;
  /** Reason of the first issue. */
  readonly reason: string;

  constructor(issues: readonly ConfigIssue[]) {
    if (issues.length === 0) {
      throw new RangeError("ConfigError needs at least one issue, found none");
    }
    const sorted = sortIssues(issues);
    super(sorted.map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = sorted;
    const [first] = sorted;
    this.file = first.file;
    this.line = first.line;
    this.col = first.col;
    this.reason = first.reason;
  }

  /**
   * A ConfigError with a single issue.
   *
   * @example
   * ```ts
   * throw ConfigError.at("m.yaml", 1, 1, "expected a mapping, found a list");
   * ```
   */
  static at(file: string, line: number, col: number, reason: string): ConfigError {
    return new ConfigError([{ file, line, col, reason }]);
  }
}

/**
 * Sort issues by file, line, column, dropping exact duplicates (zod and
 * cross-reference checks can report the same place for the same reason).
 *
 * @example
 * ```ts
 * sortIssues([{ file: "a", line: 2, col: 1, reason: "x" }, { file: "a", line: 1, col: 4, reason: "y" }]);
 * // line 1 first
 * ```
 */
export function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    const key = formatIssue(issue);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ...issue });
  }
  return out.sort((a, b) =>
    a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col
  );
}
