/**
 * One-line rendering of messages that quote text from files.
 *
 * @module
 */

/**
 * A reason (or any text quoted from a file) on one line: line breaks and
 * other control characters are written as escapes (`\n`, `\u001b`), so a
 * finding is always one `file:line:col: ...` line and quoted text cannot
 * drive the terminal.
 *
 * @example
 * ```ts
 * oneLine("unknown key 'a\nb'"); // "unknown key 'a\\nb'"
 * ```
 */
export function oneLine(text: string): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /\r\n|[\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]/g,
    (c) =>
      c === "\n"
        ? "\\n"
        : c === "\r"
        ? "\\r"
        : c === "\r\n"
        ? "\\r\\n"
        : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
