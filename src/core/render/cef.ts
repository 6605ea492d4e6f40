/**
 * ArcSight Common Event Format (CEF:0) rendering of an alert:
 * `CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension`.
 *
 * Escaping, per the CEF spec: in header fields `\` → `\\` and `|` → `\|`
 * (line breaks are not allowed in the header: they become a space); in
 * extension values `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r` (a CR LF
 * pair gives `\r\n`). Header fields are cut to the spec's lengths (by code
 * point, before escaping). Extension keys are fixed, without spaces. Pure.
 *
 * @module
 */
import type { Alert } from "../alert.ts";
import {
  alertMessage,
  alertTimeMs,
  atlasOfAlert,
  CEF_SEVERITY,
  conditionText,
  LATENTWATCH,
  type RenderOptions,
  traceOfAlert,
} from "./common.ts";

/** Options of {@linkcode toCef}. */
export interface CefOptions extends RenderOptions {
  /** `dvchost`: the host the sidecar runs on. */
  dvchost?: string;
}

/** Longest header fields, in characters (CEF spec). */
export const CEF_HEADER_LIMITS = {
  vendor: 63,
  product: 63,
  version: 31,
  signatureId: 1023,
  name: 512,
} as const;

function cut(s: string, max: number): string {
  const cps = [...s];
  return cps.length <= max ? s : cps.slice(0, max).join("");
}

/**
 * Escape a CEF header field: `\` → `\\`, `|` → `\|`; CR and LF (not allowed
 * in the header) become a space.
 *
 * @example
 * ```ts
 * cefHeaderEscape("a|b\\c"); // "a\\|b\\\\c"
 * ```
 */
export function cefHeaderEscape(s: string): string {
  return s.replace(/\r\n|[\r\n]/g, " ").replace(/[\\|]/g, (c) => `\\${c}`);
}

/**
 * Escape a CEF extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`.
 *
 * @example
 * ```ts
 * cefExtensionEscape("a=b\nc"); // "a\\=b\\nc"
 * ```
 */
export function cefExtensionEscape(s: string): string {
  return s.replace(/[\\=\r\n]/g, (c) => c === "\n" ? "\\n" : c === "\r" ? "\\r" : `\\${c}`);
}

/**
 * One alert as a CEF:0 line (no trailing newline).
 *
 * Extension: `rt` (epoch ms), `externalId` (alert id), `msg`, `act`
 * (`alert`, or the steering kinds asked for), `cat` (the first ATLAS
 * technique, else `latentwatch`), `cs1` model, `cs2` hook, `cs3` request id,
 * `cs4` tenant, `cs5` signal (`sae:index label`), `cs6` ATLAS technique ids,
 * `cn1`/`cn2`/`cn3` token start/end/count, `cfp1` value, `cfp2` threshold,
 * `flexString1` policy version, `flexString2` trace id, `dvchost` (option),
 * each `…Label` beside it; and two latentwatch keys: `lwCompletedBy` (the
 * condition that completed the rule) and `lwConditions` (every condition
 * in words, `; `-separated, see `conditionText`).
 *
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * toCef(alert); // "CEF:0|latentwatch|latentwatch|0.1.0|prompt-injection|Prompt injection|8|rt=…"
 * ```
 */
export function toCef(alert: Alert, opts: CefOptions = {}): string {
  const product = opts.product ?? LATENTWATCH;
  const header = [
    "CEF:0",
    cefHeaderEscape(cut(product.vendor, CEF_HEADER_LIMITS.vendor)),
    cefHeaderEscape(cut(product.name, CEF_HEADER_LIMITS.product)),
    cefHeaderEscape(cut(product.version, CEF_HEADER_LIMITS.version)),
    cefHeaderEscape(cut(alert.policy.id, CEF_HEADER_LIMITS.signatureId)),
    cefHeaderEscape(cut(alert.title, CEF_HEADER_LIMITS.name)),
    String(CEF_SEVERITY[alert.severity]),
  ].join("|");
  const atlas = atlasOfAlert(alert);
  const trace = traceOfAlert(alert);
  const l = alert.latent;
  const signal = `${l.signal === "probe" ? "probe" : "sae"}:${l.sae}:${l.index}` +
    (l.label !== undefined ? ` ${l.label}` : "");
  const ext: [string, string | number | undefined][] = [
    ["rt", alertTimeMs(alert)],
    ["externalId", alert.id],
    ["msg", alertMessage(alert)],
    ["act", alert.steer?.length ? alert.steer.map((s) => s.kind).join(",") : "alert"],
    ["cat", atlas[0]?.id ?? "latentwatch"],
    ["dvchost", opts.dvchost],
    ["cs1Label", "model"],
    ["cs1", alert.model],
    ["cs2Label", "hook"],
    ["cs2", alert.hook],
    ["cs3Label", "requestId"],
    ["cs3", alert.requestId],
    ["cs4Label", "tenant"],
    ["cs4", alert.tenant],
    ["cs5Label", "signal"],
    ["cs5", signal],
    ["cs6Label", "atlasTechniques"],
    ["cs6", atlas.length > 0 ? atlas.map((t) => t.id).join(",") : undefined],
    ["cn1Label", "tokenStart"],
    ["cn1", alert.tokens.start],
    ["cn2Label", "tokenEnd"],
    ["cn2", alert.tokens.end],
    ["cn3Label", "tokenCount"],
    ["cn3", alert.tokens.count],
    ["cfp1Label", "value"],
    ["cfp1", l.max],
    ["cfp2Label", "threshold"],
    ["cfp2", l.threshold],
    ["flexString1Label", "policyVersion"],
    ["flexString1", alert.policy.version],
    ["flexString2Label", "traceId"],
    ["flexString2", trace?.traceId],
    ["lwCompletedBy", alert.completedBy],
    ["lwConditions", alert.conditions?.map(conditionText).join("; ")],
  ];
  // a label goes only with its value
  const present = ext.filter(([k, v], i) => {
    if (v === undefined) return false;
    if (k.endsWith("Label")) return ext[i + 1][1] !== undefined;
    return true;
  });
  const extension = present
    .map(([k, v]) => `${k}=${cefExtensionEscape(typeof v === "number" ? String(v) : v!)}`)
    .join(" ");
  return `${header}|${extension}`;
}
