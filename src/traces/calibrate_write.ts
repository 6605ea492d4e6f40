/**
 * `policy calibrate --write`: set thresholds in a policy file in place,
 * changing only the text of each `above:`/`below:` scalar (comments,
 * layout, quoting and every other byte stay as they were). The test mapping
 * is found by its source line (and column), as compile recorded it, with
 * the `yaml` package's Document API (node ranges over the source).
 *
 * @module
 */
import { isScalar, LineCounter, parseDocument, visit } from "yaml";

/** One threshold to write: the test mapping at `line` (`col`) gets `op: value`. */
export interface ThresholdEdit {
  line: number;
  col?: number;
  op: "above" | "below";
  value: number;
}

/**
 * The shortest decimal text that reads back as exactly `v` (so what is
 * written is the threshold calibrated, not a rounding of it).
 *
 * @example
 * ```ts
 * thresholdText(2.5); // "2.5"
 * ```
 */
export function thresholdText(v: number): string {
  for (let p = 1; p <= 17; p++) {
    const s = String(Number(v.toPrecision(p)));
    if (Number(s) === v) return s;
  }
  return String(v);
}

/**
 * Apply `edits` to the YAML `text` and return the new text, or throw when a
 * test mapping or its `above`/`below` scalar is not where an edit says.
 *
 * @example
 * ```ts
 * setThresholds("when: {sae: r, latent: 0, above: 2.0} # keep\n", [{ line: 1, op: "above", value: 3 }]);
 * // "when: {sae: r, latent: 0, above: 3} # keep\n"
 * ```
 */
export function setThresholds(text: string, edits: readonly ThresholdEdit[]): string {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: true });
  const splices: { start: number; end: number; text: string }[] = [];
  for (const e of edits) {
    let found: [number, number] | null = null;
    visit(doc, {
      Map(_, node) {
        if (found || !node.range) return;
        const pos = lc.linePos(node.range[0]);
        if (pos.line !== e.line || (e.col !== undefined && pos.col !== e.col)) return;
        const pair = node.items.find((p) => isScalar(p.key) && p.key.value === e.op);
        if (pair && isScalar(pair.value) && pair.value.range) {
          found = [pair.value.range[0], pair.value.range[1]];
          return visit.BREAK;
        }
      },
    });
    if (!found) {
      // a mapping that starts on the line but the test is found by its key's line instead
      visit(doc, {
        Pair(_, pair) {
          if (found || !isScalar(pair.key) || pair.key.value !== e.op || !pair.key.range) return;
          if (lc.linePos(pair.key.range[0]).line !== e.line) return;
          if (isScalar(pair.value) && pair.value.range) {
            found = [pair.value.range[0], pair.value.range[1]];
            return visit.BREAK;
          }
        },
      });
    }
    if (!found) throw new Error(`line ${e.line}: no '${e.op}:' threshold to set`);
    const [start, end] = found as [number, number];
    splices.push({ start, end, text: thresholdText(e.value) });
  }
  splices.sort((a, b) => b.start - a.start);
  let out = text;
  for (const s of splices) out = out.slice(0, s.start) + s.text + out.slice(s.end);
  return out;
}
