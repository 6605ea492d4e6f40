/**
 * RFC 5424 syslog messages carrying an alert, and RFC 6587 octet-counting
 * framing for syslog over TCP (and RFC 5425 over TLS, which mandates it).
 *
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`: PRI is
 * facility × 8 + severity, the facility local0 (16) unless told otherwise,
 * the severity mapped from the alert's ({@linkcode SYSLOG_SEVERITY}). Absent
 * header fields are the NILVALUE `-`. One structured-data element,
 * `[latentwatch@32473 …]`, names the alert (id, policy, severity, model,
 * request, tenant, trace, `completedBy`, and `cond1`, `cond2`, … each
 * condition in words); MSG is the alert as native JSON, CEF, OCSF or ECS.
 * Pure.
 *
 * @module
 */
import type { Alert } from "../alert.ts";
import { toCef } from "./cef.ts";
import {
  AlertRenderError,
  alertTimeMs,
  conditionText,
  LATENTWATCH,
  type RenderOptions,
  SYSLOG_SEVERITY,
  traceOfAlert,
} from "./common.ts";
import { toEcs } from "./ecs.ts";
import { toJson } from "./json.ts";
import { toOcsf } from "./ocsf.ts";

/** Facility local0 (RFC 5424 code 16), the default: SOC collectors route local facilities, and alerts stay out of the host's own auth logs. */
export const FACILITY_LOCAL0 = 16;

/** The structured-data id by default: `latentwatch` under the RFC 5612 documentation enterprise number 32473 (no PEN of our own yet). */
export const DEFAULT_SD_ID = "latentwatch@32473";

/** Longest header fields, in characters (RFC 5424 §6). */
export const SYSLOG_LIMITS = { hostname: 255, appName: 48, procId: 128, msgId: 32, sdName: 32 };

/** Options of {@linkcode toSyslog5424}. */
export interface SyslogOptions extends RenderOptions {
  /** HOSTNAME (FQDN, IP, or host name); `-` or "" for none. */
  hostname: string;
  /** APP-NAME, e.g. `latentwatch`. */
  appName: string;
  /** PROCID, e.g. the process id. @default "-" */
  procId?: string;
  /** MSGID. @default "alert" */
  msgId?: string;
  /** What MSG carries. */
  format: "json" | "cef" | "ocsf" | "ecs";
  /** Facility code 0–23. @default 16 (local0) */
  facility?: number;
  /** SD-ID of the structured-data element; "" leaves structured data out (`-`). @default "latentwatch@32473" */
  sdId?: string;
  /**
   * Start MSG with the UTF-8 BOM, as RFC 5424 asks of a UTF-8 MSG: `auto`
   * only when MSG has non-ASCII characters (an ASCII MSG is the same bytes
   * either way), `true` always, `false` never (for receivers that keep the
   * BOM in front of the JSON or `CEF:`). @default "auto"
   */
  bom?: "auto" | boolean;
  /** `dvchost` of the CEF body. @default hostname */
  dvchost?: string;
}

/** A syslog header field or option out of the RFC 5424 grammar. */
export class SyslogFieldError extends RangeError {
  override name = "SyslogFieldError";
}

const PRINTUSASCII = /^[\x21-\x7e]+$/;
const SD_NAME = /^[\x21-\x7e]+$/;

/** A header field: NILVALUE when empty, else PRINTUSASCII within `max`. */
function headerField(name: string, value: string | undefined, max: number): string {
  if (value === undefined || value === "" || value === "-") return "-";
  if (!PRINTUSASCII.test(value)) {
    throw new SyslogFieldError(
      `syslog ${name} '${value}' must be printable US-ASCII (33-126), without spaces`,
    );
  }
  if (value.length > max) {
    throw new SyslogFieldError(`syslog ${name} is ${value.length} characters; at most ${max}`);
  }
  return value;
}

function sdName(what: string, name: string): string {
  if (
    !SD_NAME.test(name) || /[= \]"]/.test(name) || name.length > SYSLOG_LIMITS.sdName
  ) {
    throw new SyslogFieldError(
      `syslog ${what} '${name}' must be 1-32 printable US-ASCII characters other than '=', ' ', ']', '"'`,
    );
  }
  return name;
}

/**
 * Escape an SD-PARAM value (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
 *
 * @example
 * ```ts
 * sdEscape('a"b]c\\'); // 'a\\"b\\]c\\\\'
 * ```
 */
export function sdEscape(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/**
 * RFC 5424 TIMESTAMP of the alert: RFC 3339, UTC, millisecond precision.
 *
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 */
export function syslogTimestamp(alert: Pick<Alert, "time">): string {
  return new Date(alertTimeMs(alert)).toISOString();
}

/**
 * One alert as an RFC 5424 syslog message (a string; frame it with
 * {@linkcode octetFrame} for TCP or TLS).
 *
 * @throws {SyslogFieldError} for a header field or SD-ID outside the grammar.
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * toSyslog5424(alert, { hostname: "gw1", appName: "latentwatch", format: "cef" });
 * // '<131>1 2026-05-01T12:00:00.123Z gw1 latentwatch - alert [latentwatch@32473 id="…" …] CEF:0|…'
 * ```
 */
export function toSyslog5424(alert: Alert, opts: SyslogOptions): string {
  const facility = opts.facility ?? FACILITY_LOCAL0;
  if (!Number.isInteger(facility) || facility < 0 || facility > 23) {
    throw new SyslogFieldError(`syslog facility ${facility} is not an integer 0-23`);
  }
  const pri = facility * 8 + SYSLOG_SEVERITY[alert.severity];
  const header = [
    `<${pri}>1`,
    syslogTimestamp(alert),
    headerField("HOSTNAME", opts.hostname, SYSLOG_LIMITS.hostname),
    headerField("APP-NAME", opts.appName, SYSLOG_LIMITS.appName),
    headerField("PROCID", opts.procId, SYSLOG_LIMITS.procId),
    headerField("MSGID", opts.msgId ?? "alert", SYSLOG_LIMITS.msgId),
  ].join(" ");
  const sdId = opts.sdId ?? DEFAULT_SD_ID;
  let sd = "-";
  if (sdId !== "") {
    const trace = traceOfAlert(alert);
    const params: [string, string | undefined][] = [
      ["id", alert.id],
      ["policy", alert.policy.id],
      ["policyVersion", alert.policy.version],
      ["severity", alert.severity],
      ["monitor", alert.monitor],
      ["model", alert.model],
      ["request", alert.requestId],
      ["tenant", alert.tenant],
      ["traceId", trace?.traceId],
      ["completedBy", alert.completedBy],
      // one parameter per condition, numbered from 1 in rule order
      ...(alert.conditions ?? []).map((c, k): [string, string] => [
        `cond${k + 1}`,
        conditionText(c),
      ]),
    ];
    sd = `[${sdName("SD-ID", sdId)}` +
      params
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => ` ${k}="${sdEscape(v!)}"`)
        .join("") +
      "]";
  }
  const product = opts.product ?? LATENTWATCH;
  const msg = opts.format === "json"
    ? toJson(alert)
    : opts.format === "cef"
    ? toCef(alert, { product, dvchost: opts.dvchost ?? nil(opts.hostname) })
    : opts.format === "ocsf"
    ? JSON.stringify(toOcsf(alert, { product }))
    : opts.format === "ecs"
    ? JSON.stringify(toEcs(alert, { product }))
    : badFormat(opts.format);
  const bom = opts.bom ?? "auto";
  const withBom = bom === true || (bom === "auto" && /[^ -~]/.test(msg));
  return `${header} ${sd} ${withBom ? "\uFEFF" : ""}${msg}`;
}

function nil(s: string): string | undefined {
  return s === "" || s === "-" ? undefined : s;
}

function badFormat(format: never): never {
  throw new AlertRenderError(`unknown syslog MSG format '${format}': json, cef, ocsf or ecs`);
}

/**
 * RFC 6587 §3.4.1 octet-counting frame: `MSG-LEN SP SYSLOG-MSG`, MSG-LEN
 * the length in bytes of the UTF-8 encoding (not in UTF-16 code units).
 *
 * @example
 * ```ts
 * new TextDecoder().decode(octetFrame("<14>1 - - - - - - é")); // "20 <14>1 - - - - - - é"
 * ```
 */
export function octetFrame(msg: string | Uint8Array): Uint8Array {
  const body = typeof msg === "string" ? new TextEncoder().encode(msg) : msg;
  const prefix = new TextEncoder().encode(`${body.length} `);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}
