/**
 * What every rendering shares: the product identity, severity scales, the
 * alert time in milliseconds, and the derived fields (ATLAS techniques, trace
 * ids, token text) an alert may carry or leave to be derived, and a
 * condition in words. Pure.
 *
 * @module
 */
import {
  type Alert,
  type AlertAtlasTechnique,
  type AlertCondition,
  type AlertTrace,
  traceContext,
} from "../alert.ts";
import type { Severity } from "../policy/ast.ts";
import { poolText } from "../policy/condition_fields.ts";
import { atlasOf } from "./atlas.ts";
import { joinTokenText } from "./token_text.ts";

/** Who emits the alert, as SOC schemas name a product. */
export interface Product {
  vendor: string;
  name: string;
  version: string;
}

/** latentwatch itself. */
export const LATENTWATCH: Product = {
  vendor: "latentwatch",
  name: "latentwatch",
  version: "0.1.0",
};

/** Options every rendering takes. */
export interface RenderOptions {
  /** @default {@linkcode LATENTWATCH} */
  product?: Product;
}

/** An alert a rendering cannot express (an unparseable time, a header field out of range). */
export class AlertRenderError extends TypeError {
  override name = "AlertRenderError";
}

/** OCSF `severity_id` (1 Informational … 5 Critical) per severity; ECS `event.severity` uses the same. */
export const OCSF_SEVERITY: Readonly<Record<Severity, { id: number; caption: string }>> = {
  info: { id: 1, caption: "Informational" },
  low: { id: 2, caption: "Low" },
  medium: { id: 3, caption: "Medium" },
  high: { id: 4, caption: "High" },
  critical: { id: 5, caption: "Critical" },
};

/** CEF header severity (0–3 Low, 4–6 Medium, 7–8 High, 9–10 Very-High) per severity. */
export const CEF_SEVERITY: Readonly<Record<Severity, number>> = {
  info: 1,
  low: 3,
  medium: 5,
  high: 8,
  critical: 10,
};

/** Syslog severity (RFC 5424: 2 crit, 3 err, 4 warning, 5 notice, 6 info) per severity. */
export const SYSLOG_SEVERITY: Readonly<Record<Severity, number>> = {
  info: 6,
  low: 5,
  medium: 4,
  high: 3,
  critical: 2,
};

/** ECS `event.risk_score` (0–100, the Elastic detection-rule convention) per severity. */
export const RISK_SCORE: Readonly<Record<Severity, number>> = {
  info: 0,
  low: 21,
  medium: 47,
  high: 73,
  critical: 99,
};

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * The alert time as epoch milliseconds (integer).
 *
 * @throws {AlertRenderError} when `alert.time` is not an RFC 3339 date-time.
 * @example
 * ```ts
 * alertTimeMs({ ...alert, time: "2026-05-01T12:00:00.123Z" }); // 1777636800123
 * ```
 */
export function alertTimeMs(alert: Pick<Alert, "time">): number {
  const ms = RFC3339.test(alert.time) ? Date.parse(alert.time) : NaN;
  if (!Number.isFinite(ms)) {
    throw new AlertRenderError(`alert time '${alert.time}' is not an RFC 3339 date-time`);
  }
  return ms;
}

/**
 * The alert's ATLAS techniques: `alert.atlas` when the pipeline filled it,
 * else derived from `alert.tags`.
 *
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * atlasOfAlert({ ...alert, tags: ["AML.T0054"] })[0].name; // "LLM Jailbreak"
 * ```
 */
export function atlasOfAlert(alert: Alert): AlertAtlasTechnique[] {
  return alert.atlas ?? atlasOf(alert.tags);
}

/**
 * The alert's trace ids: `alert.trace` when filled, else parsed from `alert.traceparent`.
 *
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * traceOfAlert(alert)?.traceId; // "4bf92f3577b34da6a3ce929d0e0e4736"
 * ```
 */
export function traceOfAlert(alert: Alert): AlertTrace | undefined {
  return alert.trace ?? traceContext(alert.traceparent);
}

/**
 * The text of the firing tokens, in position order, when the tap sent it
 * (`undefined` when no evidence carries text): the one rendering of token
 * text, {@linkcode joinTokenText}.
 *
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * spanText(alert); // "Ignore previous"
 * ```
 */
export function spanText(alert: Alert): string | undefined {
  return joinTokenText(alert.evidence);
}

/**
 * The alert fields OCSF `unmapped` and the ECS `latentwatch` object carry
 * alike, in this order: policy, model, hook, request id, the optional
 * tenant, meta and phase, the token span (with its {@linkcode spanText}),
 * and the latent.
 *
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * const doc = { schema: alert.schema, ...alertCoreFields(alert) };
 * ```
 */
export function alertCoreFields(alert: Alert): Record<string, unknown> {
  const text = spanText(alert);
  return {
    policy: alert.policy,
    model: alert.model,
    hook: alert.hook,
    request_id: alert.requestId,
    ...(alert.tenant !== undefined ? { tenant: alert.tenant } : {}),
    ...(alert.meta !== undefined ? { meta: alert.meta } : {}),
    ...(alert.phase !== undefined ? { phase: alert.phase } : {}),
    tokens: { ...alert.tokens, ...(text !== undefined ? { text } : {}) },
    latent: alert.latent,
    ...(alert.conditions !== undefined
      ? { conditions: alert.conditions, completed_by: alert.completedBy }
      : {}),
  };
}

/** A number as alerts show it in text: six significant digits at most. */
function shown(v: number): string {
  return Number.isInteger(v) || !Number.isFinite(v) ? String(v) : String(Number(v.toPrecision(6)));
}

/**
 * One condition of an alert in words: name, signal, pooling, test, pooled
 * value, whether it held and whether it completed the rule.
 *
 * @example
 * ```ts
 * conditionText({
 *   name: "email", sae: "res12", index: 10, label: "e-mail address",
 *   pool: { kind: "max", window: 8 }, op: "above", threshold: 5, value: 5.99, held: true,
 * }); // "email: sae res12:10 'e-mail address' max 8 above 5 = 5.99 (held)"
 * ```
 */
export function conditionText(c: AlertCondition): string {
  return `${c.name}: ${c.signal === "probe" ? "probe" : "sae"} ${c.sae}:${c.index}` +
    (c.label !== undefined ? ` '${c.label}'` : "") +
    (c.family ? ` family (${c.family.members} members, ${c.family.combine})` : "") +
    ` ${poolText(c.pool)} ${c.op} ${shown(c.threshold)} = ${shown(c.value)}` +
    ` (${c.held ? "held" : "not held"}${c.completed ? ", completed the rule" : ""})`;
}

/** The human line of an alert: its rendered description, else its title. */
export function alertMessage(alert: Alert): string {
  return alert.description ?? alert.title;
}
