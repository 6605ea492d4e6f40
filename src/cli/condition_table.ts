/**
 * The table `policy test` prints under a failing case: for one rule, each
 * condition (test leaf) valued per token of the request, pooled as the
 * engine pools it, against its threshold, whether the whole condition held
 * and where the rule fired; so an author sees why it did (not) fire.
 *
 * @module
 */
import type { CompiledRule, CompiledTest } from "../core/policy/compiled.ts";
import {
  conditionHoldsAt,
  conditionLabel,
  ruleConditionValues,
} from "../core/policy/condition_values.ts";
import { fmtNum, rel } from "./policy_format.ts";

/** Requests longer than this show only the tokens where something happens. */
export const TABLE_ALL_ROWS = 40;
/** The line under every table. */
export const LEGEND =
  "(#n: pooled value, ✓ held; holds: the rule's whole condition; fired: where " +
  "the engine fired, which evaluates a rule only where a trigger signal is active, then applies " +
  "exceptions and suppression)";
/** Token text wider than this is cut (with `…`). */
const TOKEN_WIDTH = 16;

/** What {@linkcode conditionTable} draws. */
export interface ConditionTableInput {
  rule: CompiledRule;
  /** Tokens of the request. */
  length: number;
  /** A test's signal value per token (from the request's first token). */
  rawOf: (t: CompiledTest) => readonly number[];
  /** Token text per position, when known. */
  text?: (pos: number) => string | undefined;
  /** Positions where the rule fired in this request. */
  firedAt: readonly number[];
}

/**
 * The table's lines (without indentation): a legend line per condition
 * (`#1 file:line:col signal: above 2`), a header, then one row per token:
 * position, token text, each condition's pooled value with `✓` (held) or
 * `✗`, whether the rule's whole condition held, and whether it fired. A
 * request of more than {@linkcode TABLE_ALL_ROWS} tokens shows only rows
 * where a value is not 0 or the rule fired.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "../core/policy/compiled.ts";
 * import { conditionTable } from "./condition_table.ts";
 * declare const rule: CompiledRule;
 * console.log(conditionTable({ rule, length: 2, rawOf: () => [0, 3], firedAt: [1] }).join("\n"));
 * ```
 */
export function conditionTable(input: ConditionTableInput): string[] {
  const { rule, length } = input;
  const conds = ruleConditionValues(rule, (t) => {
    const raw = input.rawOf(t);
    return raw.length >= length ? raw.slice(0, length) : [
      ...raw,
      ...new Array<number>(length - raw.length).fill(0),
    ];
  });
  const fired = new Set(input.firedAt);
  const out = conds.map((c, k) => {
    const leaf = { ...c.leaf, source: { ...c.leaf.source, file: rel(c.leaf.source.file) } };
    return `#${k + 1} ${conditionLabel(leaf, c.test, c.name)}: ${c.op} ${fmtNum(c.threshold)}`;
  });
  const header = ["pos", "token", ...conds.map((_, k) => `#${k + 1}`), "holds", "fired"];
  const rows: string[][] = [];
  let left = 0;
  for (let pos = 0; pos < length; pos++) {
    const quiet = conds.every((c) => c.pooled[pos] === 0 && c.raw[pos] === 0) && !fired.has(pos);
    if (length > TABLE_ALL_ROWS && quiet) {
      left++;
      continue;
    }
    const text = input.text?.(pos);
    rows.push([
      String(pos),
      text === undefined ? "" : JSON.stringify(cut(text)),
      ...conds.map((c) => `${fmtNum(c.pooled[pos])} ${c.held[pos] ? "✓" : "✗"}`),
      conditionHoldsAt(rule.condition, conds, pos) ? "yes" : "no",
      fired.has(pos) ? "yes" : "no",
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  out.push(line(header), ...rows.map(line));
  if (left > 0) out.push(`(${left} token(s) where every value is 0 and nothing fired left out)`);
  out.push(LEGEND);
  return out;
}

function cut(s: string): string {
  const chars = [...s];
  return chars.length > TOKEN_WIDTH ? chars.slice(0, TOKEN_WIDTH - 1).join("") + "…" : s;
}
