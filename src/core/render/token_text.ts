/**
 * The one rendering of token text: how the texts of an alert's tokens (its
 * evidence, a firing's positions, the `{text}` of a description or dedup
 * key) become one string. `alerts tail`, `replay`, the demo, the SIEM
 * renderings (`tokens.text`) and the policy templates all call
 * {@linkcode joinTokenText}; text outputs show it through
 * {@linkcode shownTokenText}. Pure.
 *
 * The rule, in position order:
 *
 * - **The tokenizer's own spacing is kept.** When any token of the span
 *   carries whitespace (GPT-2 style `" previous"`, a `"\n"`), the texts are
 *   concatenated as they are: `["Ignore", " previous"]` → `Ignore previous`,
 *   `[" instruct", "ions"]` → ` instructions`.
 * - **Otherwise tokens are separated by `·`** ({@linkcode TOKEN_SEPARATOR}):
 *   tokens that carry no whitespace at all (word-level tokens such as the
 *   demo's, or pieces of one word) cannot say where the spaces were, so the
 *   boundary is shown rather than a space invented: `["Ignore", "previous"]`
 *   → `Ignore·previous`.
 * - **A gap is shown as `…`** ({@linkcode TOKEN_GAP}): tokens whose positions
 *   are not adjacent (a rule that held on tokens 4, 6 and 7) are separated
 *   by ` … `, without doubling a space a token already carries.
 * - **A token without text reads `?`** when others of the span have text;
 *   when none has, there is no token text (`undefined`).
 *
 * @module
 */

/** Shown between adjacent tokens that carry no whitespace of their own. */
export const TOKEN_SEPARATOR = "·";
/** Shown between tokens whose positions are not adjacent. */
export const TOKEN_GAP = "…";
/** Stands for a token whose text the tap did not send, among tokens that have text. */
export const MISSING_TOKEN_TEXT = "?";

/** One token of a span: its position in the request and its text when known. */
export interface TokenPiece {
  readonly position: number;
  readonly text?: string | undefined;
}

const WHITESPACE = /\s/u;
const ENDS_WITH_WHITESPACE = /\s$/u;
const STARTS_WITH_WHITESPACE = /^\s/u;

/**
 * The text of `tokens` as one string by the module's rule (sorted by
 * position here), or `undefined` when no token has text.
 *
 * @example
 * ```ts
 * joinTokenText([{ position: 1, text: " previous" }, { position: 0, text: "Ignore" }]);
 * // "Ignore previous"
 * joinTokenText([
 *   { position: 4, text: "Ignore" }, { position: 6, text: "previous" }, { position: 7, text: "instructions" },
 * ]); // "Ignore … previous·instructions"
 * joinTokenText([{ position: 0 }]); // undefined
 * ```
 */
export function joinTokenText(tokens: readonly TokenPiece[]): string | undefined {
  if (!tokens.some((t) => t.text !== undefined)) return undefined;
  const sorted = [...tokens].sort((a, b) => a.position - b.position);
  const texts = sorted.map((t) => t.text ?? MISSING_TOKEN_TEXT);
  const spaced = texts.some((t) => WHITESPACE.test(t));
  let out = texts[0];
  for (let i = 1; i < texts.length; i++) {
    if (sorted[i].position > sorted[i - 1].position + 1) {
      const before = ENDS_WITH_WHITESPACE.test(texts[i - 1]) ? "" : " ";
      const after = STARTS_WITH_WHITESPACE.test(texts[i]) ? "" : " ";
      out += `${before}${TOKEN_GAP}${after}`;
    } else if (!spaced) {
      out += TOKEN_SEPARATOR;
    }
    out += texts[i];
  }
  return out;
}

/** Options of {@linkcode shownTokenText}. */
export interface ShownTokenTextOptions {
  /** Longest text shown, in characters (code points), `…` included. @default 60 */
  maxChars?: number;
}

/**
 * The token text as text outputs print it: {@linkcode joinTokenText}, cut
 * to `maxChars` (ending in `…`), in JSON quotes so that a newline or a
 * control character shows as its escape instead of breaking the line;
 * `undefined` when no token has text.
 *
 * @example
 * ```ts
 * shownTokenText([{ position: 12, text: " ignore" }, { position: 13, text: "\ninstructions" }]);
 * // "\" ignore\\ninstructions\""
 * shownTokenText([{ position: 0, text: "abcdef" }], { maxChars: 4 }); // "\"abc…\""
 * ```
 */
export function shownTokenText(
  tokens: readonly TokenPiece[],
  opts: ShownTokenTextOptions = {},
): string | undefined {
  const text = joinTokenText(tokens);
  if (text === undefined) return undefined;
  const max = Math.max(1, opts.maxChars ?? 60);
  const chars = Array.from(text);
  return JSON.stringify(chars.length > max ? chars.slice(0, max - 1).join("") + "…" : text);
}
