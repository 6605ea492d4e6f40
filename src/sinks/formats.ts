/**
 * The renderings a sink can send, by the names the monitor config uses. The
 * renderers themselves live in `src/core/render/` and are pure; this maps a
 * config name to one.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { toJson } from "../core/render/json.ts";
import { toOcsf } from "../core/render/ocsf.ts";
import { toEcs } from "../core/render/ecs.ts";

/** Renderings that are one JSON document (webhook bodies, Splunk events, JSON lines). */
export const JSON_FORMATS = ["json", "ocsf", "ecs"] as const;
/** A JSON rendering's name. */
export type JsonFormat = (typeof JSON_FORMATS)[number];

/** Renderings a syslog message can carry (the MSG part). */
export const SYSLOG_FORMATS = ["json", "cef", "ocsf"] as const;
/** A syslog rendering's name. */
export type SyslogFormat = (typeof SYSLOG_FORMATS)[number];

/**
 * `alert` rendered as a JSON value (`json` is the native record itself).
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * renderObject(alert, "ocsf"); // { class_uid: 2004, ... }
 * ```
 */
export function renderObject(alert: Alert, format: JsonFormat): unknown {
  switch (format) {
    case "json":
      return JSON.parse(toJson(alert));
    case "ocsf":
      return toOcsf(alert);
    case "ecs":
      return toEcs(alert);
  }
}

/**
 * `alert` rendered as one line of JSON text (no newline inside).
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * import { toJson } from "../core/render/json.ts";
 * renderLine(alert, "json") === toJson(alert); // true
 * ```
 */
export function renderLine(alert: Alert, format: JsonFormat): string {
  return format === "json" ? toJson(alert) : JSON.stringify(renderObject(alert, format));
}
