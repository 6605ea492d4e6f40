/**
 * Redaction of the token text a recorded frame carries (`record.redact`):
 * the `Lw-Token-Text` header of the message, rewritten before the record
 * is written, so the trace file never holds the text verbatim.
 *
 * @module
 */
import { asciiJson } from "../core/frame/encode.ts";
import { HEADER } from "../core/frame/format.ts";
import { type RedactOptions, redactText } from "../core/redact.ts";

/**
 * `headers` with each string of `Lw-Token-Text` redacted by `opts`; the same
 * object under `none` or without the header. A header that is not a JSON
 * list of strings cannot be redacted string by string and is left out (its
 * frame would be rejected on replay anyway).
 *
 * @example
 * ```ts
 * redactTokenTextHeader({ "Lw-Token-Text": '["hunter2024"]' }, { mode: "tokens" });
 * // { "Lw-Token-Text": '["[redacted]"]' }
 * ```
 */
export function redactTokenTextHeader(
  headers: Record<string, string>,
  opts: RedactOptions,
): Record<string, string> {
  const raw = headers[HEADER.tokenText];
  if (opts.mode === "none" || raw === undefined) return headers;
  const { [HEADER.tokenText]: _text, ...rest } = headers;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return rest;
  }
  if (!Array.isArray(parsed) || !parsed.every((t) => typeof t === "string")) return rest;
  return { ...rest, [HEADER.tokenText]: asciiJson(parsed.map((t) => redactText(t, opts))) };
}
