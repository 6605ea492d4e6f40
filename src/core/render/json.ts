/**
 * The native rendering: the alert record itself (`latentwatch.alert/v1`) as
 * one line of JSON. Pure.
 *
 * @module
 */
import type { Alert } from "../alert.ts";

/**
 * The alert as one line of JSON (no newline inside: JSON escapes them), the
 * record published to the alert stream, unchanged.
 *
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * JSON.parse(toJson(alert)).schema; // "latentwatch.alert/v1"
 * ```
 */
export function toJson(alert: Alert): string {
  return JSON.stringify(alert);
}
