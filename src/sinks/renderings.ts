/**
 * The payload each sink sends, built in one place: the syslog sink, the
 * webhook sink and the rendered JetStream publications
 * (`sinks: [{type: jetstream, ...}]`, read by deploy/vector/) all call
 * {@linkcode renderPayload}, so an alert has one ECS, one CEF, one syslog and
 * one Splunk HEC shape wherever it goes. The renderers themselves are the
 * pure functions of `src/core/render/`.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { toCef } from "../core/render/cef.ts";
import { octetFrame, type SyslogOptions, toSyslog5424 } from "../core/render/syslog.ts";
import { type JsonFormat, renderLine, renderObject } from "./formats.ts";
import { alertTimeMs } from "../core/render/common.ts";

/** Renderings a syslog message can carry (its MSG part). */
export type SyslogMsgFormat = "json" | "cef" | "ocsf" | "ecs";

/** Renderings published as they are: one JSON document, or one CEF line. */
export type DocumentFormat = JsonFormat | "cef";

/** What a sink sends per alert. */
export type Rendering =
  /** The rendering alone: a JSON document (native, OCSF, ECS) or a CEF line. */
  | { shape: "document"; format: DocumentFormat; hostname?: string }
  /** An RFC 5424 message in an RFC 6587 octet-counted frame, MSG in `format`. */
  | {
    shape: "syslog";
    format: SyslogMsgFormat;
    hostname: string;
    appName?: string;
    facility?: number;
  }
  /** A Splunk HTTP Event Collector event, `event` in `format`. */
  | {
    shape: "splunk-hec";
    format: JsonFormat;
    host: string;
    source?: string;
    sourcetype?: string;
    index?: string;
  };

/** A rendering's shape. */
export type RenderingShape = Rendering["shape"];

/** Shapes of a rendered publication. */
export const RENDERING_SHAPES = ["document", "syslog", "splunk-hec"] as const;

/**
 * The Splunk HEC event for `alert`: `time` in epoch seconds (milliseconds as
 * the fraction), `event` the rendered alert.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * splunkHecEvent(alert, { host: "gw1" }, "json");
 * // { time: 1777636800.123, host: "gw1", source: "latentwatch", sourcetype: "latentwatch:alert", event: {...} }
 * ```
 */
export function splunkHecEvent(
  alert: Alert,
  hec: { host: string; source?: string; sourcetype?: string; index?: string },
  format: JsonFormat = "json",
): Record<string, unknown> {
  return {
    time: alertTimeMs(alert) / 1000,
    host: hec.host,
    source: hec.source ?? "latentwatch",
    sourcetype: hec.sourcetype ?? "latentwatch:alert",
    ...(hec.index !== undefined ? { index: hec.index } : {}),
    event: renderObject(alert, format),
  };
}

/**
 * The RFC 5424 message of the syslog shape (unframed), with the options the
 * syslog sink uses: APP-NAME `latentwatch` and facility local0 unless told.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * syslogMessage(alert, { hostname: "gw1", format: "json" }); // "<131>1 2026-05-01T12:00:00.123Z gw1 latentwatch - alert [...] {...}"
 * ```
 */
export function syslogMessage(
  alert: Alert,
  r: { hostname: string; format: SyslogMsgFormat; appName?: string; facility?: number },
): string {
  const opts: SyslogOptions = {
    hostname: r.hostname,
    appName: r.appName ?? "latentwatch",
    format: r.format,
    ...(r.facility !== undefined ? { facility: r.facility } : {}),
  };
  return toSyslog5424(alert, opts);
}

const enc = new TextEncoder();

/**
 * `alert` as the bytes `r` says: the document (no trailing newline), the
 * octet-counted syslog frame, or the HEC event as JSON.
 *
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 * @throws {SyslogFieldError} for a syslog header field outside RFC 5424.
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * declare const alert: Alert;
 * const ecs = JSON.parse(new TextDecoder().decode(renderPayload(alert, { shape: "document", format: "ecs" })));
 * ecs.event.kind; // "alert"
 * ```
 */
export function renderPayload(alert: Alert, r: Rendering): Uint8Array {
  switch (r.shape) {
    case "document":
      return enc.encode(
        r.format === "cef"
          ? toCef(alert, r.hostname !== undefined ? { dvchost: r.hostname } : {})
          : renderLine(alert, r.format),
      );
    case "syslog":
      return octetFrame(syslogMessage(alert, r));
    case "splunk-hec":
      return enc.encode(JSON.stringify(splunkHecEvent(alert, r, r.format)));
  }
}

/** MIME type of a rendering's payload (the `Content-Type` header of its publication). */
export function renderingContentType(r: Rendering): string {
  if (r.shape === "syslog") return "application/syslog";
  return r.shape === "document" && r.format === "cef" ? "text/plain" : "application/json";
}

/**
 * The short name of a rendering, used in its default subject and its
 * message ids: the format for a document (`ecs`), the shape for a syslog or
 * HEC rendering of the native alert (`syslog`, `splunk-hec`), else both
 * (`syslog-cef`, `splunk-hec-ecs`).
 *
 * @example
 * ```ts
 * renderingId({ shape: "document", format: "ecs" }); // "ecs"
 * renderingId({ shape: "syslog", format: "cef" }); // "syslog-cef"
 * ```
 */
export function renderingId(r: Pick<Rendering, "shape" | "format">): string {
  if (r.shape === "document") return r.format;
  return r.format === "json" ? r.shape : `${r.shape}-${r.format}`;
}

/** Prefix of the subjects rendered publications go to by default. */
export const RENDER_SUBJECT_PREFIX = "latentwatch.render.";

/**
 * The default subject of a rendered publication: `latentwatch.render.<id>.<monitor>`.
 *
 * @example
 * ```ts
 * renderSubject({ shape: "document", format: "ecs" }, "demo"); // "latentwatch.render.ecs.demo"
 * ```
 */
export function renderSubject(r: Pick<Rendering, "shape" | "format">, monitor: string): string {
  return `${RENDER_SUBJECT_PREFIX}${renderingId(r)}.${monitor}`;
}
