/**
 * OCSF Detection Finding (class_uid 2004, schema 1.3.0) rendering of an
 * alert. Every required attribute of the class is filled: `class_uid`,
 * `category_uid`, `activity_id`, `type_uid`, `severity_id`, `time` (epoch
 * ms), `metadata` (`version`, `product` with `name` and `vendor_name`) and
 * `finding_info` (`uid`, `title`). Only attributes OCSF 1.3.0 defines for
 * the class and its objects are rendered (checked against the official
 * schema files by `tests/ocsf_conformance_test.ts`); what 1.3.0 has no
 * attribute for goes under `unmapped`, and an attribute a later release
 * added (`is_alert` from 1.4, an evidence's `name` from 1.5) keeps its path
 * there (`unmapped.is_alert`, `unmapped.evidences[i].name`). Pure.
 *
 * @module
 */
import type { Alert } from "../alert.ts";
import {
  alertCoreFields,
  alertMessage,
  alertTimeMs,
  atlasOfAlert,
  LATENTWATCH,
  OCSF_SEVERITY,
  type RenderOptions,
  traceOfAlert,
} from "./common.ts";
import { ATLAS_TECHNIQUES } from "./atlas.ts";

/**
 * The OCSF schema version the events follow (`metadata.version`): 1.3.0,
 * the release most SIEM parsers and data lakes accept (see docs/alerts.md).
 */
export const OCSF_VERSION = "1.3.0";

/** Detection Finding. */
export const OCSF_CLASS_UID = 2004;
/** Findings. */
export const OCSF_CATEGORY_UID = 2;
/** Activity: Create (every alert is a new finding; its uid is the alert id). */
export const OCSF_ACTIVITY_CREATE = 1;

/** A JSON object. */
export type JsonObject = Record<string, unknown>;

/**
 * One alert as an OCSF Detection Finding, Create activity (`type_uid`
 * 200401), status New.
 *
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * const f = toOcsf(alert);
 * f.class_uid; // 2004
 * f.type_uid; // 200401
 * ```
 */
export function toOcsf(alert: Alert, opts: RenderOptions = {}): JsonObject {
  const product = opts.product ?? LATENTWATCH;
  const time = alertTimeMs(alert);
  const severity = OCSF_SEVERITY[alert.severity];
  const atlas = atlasOfAlert(alert);
  const trace = traceOfAlert(alert);
  const attacks = atlas.flatMap((t) => {
    const sub = t.id.length > 9;
    const uid = t.id.slice(0, 9);
    const name = sub ? ATLAS_TECHNIQUES[uid]?.name : t.name;
    const technique = { uid, ...(name ? { name } : {}) };
    const base = {
      technique,
      ...(sub ? { sub_technique: { uid: t.id, ...(t.name ? { name: t.name } : {}) } } : {}),
    };
    const tactics = t.tactics ?? [];
    return tactics.length === 0
      ? [base]
      : tactics.map((tc) => ({ ...base, tactic: { uid: tc.id, name: tc.name } }));
  });
  const signal = alert.latent.signal === "probe" ? "probe" : "sae";
  return {
    class_uid: OCSF_CLASS_UID,
    class_name: "Detection Finding",
    category_uid: OCSF_CATEGORY_UID,
    category_name: "Findings",
    activity_id: OCSF_ACTIVITY_CREATE,
    activity_name: "Create",
    type_uid: OCSF_CLASS_UID * 100 + OCSF_ACTIVITY_CREATE,
    type_name: "Detection Finding: Create",
    time,
    severity_id: severity.id,
    severity: severity.caption,
    status_id: 1,
    status: "New",
    message: alertMessage(alert),
    metadata: {
      version: OCSF_VERSION,
      uid: alert.id,
      correlation_uid: alert.requestId,
      ...(alert.tenant !== undefined ? { tenant_uid: alert.tenant } : {}),
      log_name: "latentwatch.alert",
      product: { name: product.name, vendor_name: product.vendor, version: product.version },
    },
    finding_info: {
      uid: alert.id,
      title: alert.title,
      ...(alert.description !== undefined ? { desc: alert.description } : {}),
      types: atlas.length > 0
        ? atlas.map((t) => (t.name ? `${t.id} ${t.name}` : t.id))
        : ["latentwatch.alert"],
      analytic: {
        uid: alert.policy.id,
        name: alert.title,
        type_id: 1,
        type: "Rule",
        ...(alert.policy.version !== undefined ? { version: alert.policy.version } : {}),
      },
      ...(attacks.length > 0 ? { attacks } : {}),
      created_time: time,
      data_sources: [`${signal}:${alert.latent.sae}`],
    },
    resources: [{ type: "llm_model", uid: alert.model, name: alert.model }],
    observables: [
      { name: "resources.uid", type_id: 10, type: "Resource UID", value: alert.model },
      { name: "metadata.correlation_uid", type_id: 99, type: "Other", value: alert.requestId },
      ...(alert.tenant !== undefined
        ? [{ name: "metadata.tenant_uid", type_id: 99, type: "Other", value: alert.tenant }]
        : []),
    ],
    evidences: alert.evidence.map((e) => ({
      data: {
        request_id: alert.requestId,
        position: e.position,
        ...(e.tokenId !== undefined ? { token_id: e.tokenId } : {}),
        ...(e.text !== undefined ? { text: e.text } : {}),
        [signal]: alert.latent.sae,
        index: alert.latent.index,
        ...(alert.latent.label !== undefined ? { label: alert.latent.label } : {}),
        value: e.value,
        ...(e.topLatents ? { top_latents: e.topLatents } : {}),
      },
    })),
    count: alert.tokens.count,
    unmapped: {
      // OCSF 1.4 `is_alert` and 1.5 `evidences[].name`, at their paths
      is_alert: true,
      evidences: alert.evidence.map((e) => ({ name: `token ${e.position}` })),
      schema: alert.schema,
      monitor: alert.monitor,
      ...alertCoreFields(alert),
      ...(alert.latents !== undefined ? { latents: alert.latents } : {}),
      ...(alert.probes !== undefined ? { probes: alert.probes } : {}),
      ...(alert.tags !== undefined ? { tags: alert.tags } : {}),
      ...(alert.steer !== undefined ? { steer: alert.steer } : {}),
      ...(trace !== undefined
        ? {
          trace: {
            trace_id: trace.traceId,
            span_id: trace.spanId,
            sampled: trace.sampled,
            ...(trace.tracestate !== undefined ? { tracestate: trace.tracestate } : {}),
            ...(alert.traceparent !== undefined ? { traceparent: alert.traceparent } : {}),
          },
        }
        : {}),
    },
  };
}
