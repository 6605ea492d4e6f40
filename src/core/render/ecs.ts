/**
 * Elastic Common Schema (ECS 8.11) rendering of an alert: `event.kind`
 * `alert` (a detection rule executing outside the Elastic Stack), rule
 * identity under `rule.*`, MITRE ATLAS under `threat.*`, trace ids under
 * `trace.id`/`span.id`, and what ECS has no field for under the custom
 * namespace `latentwatch.*`. Nested objects, not dotted keys. Pure.
 *
 * @module
 */
import type { Alert } from "../alert.ts";
import { ATLAS_TECHNIQUES, atlasUrl } from "./atlas.ts";
import {
  alertCoreFields,
  alertMessage,
  alertTimeMs,
  atlasOfAlert,
  LATENTWATCH,
  OCSF_SEVERITY,
  type RenderOptions,
  RISK_SCORE,
  traceOfAlert,
} from "./common.ts";
import type { JsonObject } from "./ocsf.ts";

/** The ECS version the documents follow (`ecs.version`). */
export const ECS_VERSION = "8.11.0";

/** ECS `labels` keys must not hold dots; request metadata keys are `[a-z0-9_-]+` already. */
function labelKey(key: string): string {
  return key.replace(/[.\s]/g, "_");
}

/**
 * One alert as an ECS document.
 *
 * @throws {AlertRenderError} when the alert time is not RFC 3339.
 * @example
 * ```ts
 * import type { Alert } from "../alert.ts";
 * declare const alert: Alert;
 * const doc = toEcs(alert);
 * doc["@timestamp"]; // alert.time
 * (doc.event as { kind: string }).kind; // "alert"
 * ```
 */
export function toEcs(alert: Alert, opts: RenderOptions = {}): JsonObject {
  const product = opts.product ?? LATENTWATCH;
  const time = new Date(alertTimeMs(alert)).toISOString();
  const atlas = atlasOfAlert(alert);
  const trace = traceOfAlert(alert);
  const techniques = atlas.filter((t) => t.id.length === 9);
  const subs = atlas.filter((t) => t.id.length > 9);
  // a sub-technique's parent is a technique of the alert too
  for (const s of subs) {
    const parent = s.id.slice(0, 9);
    if (!techniques.some((t) => t.id === parent)) {
      const name = ATLAS_TECHNIQUES[parent]?.name;
      techniques.push({ id: parent, ...(name ? { name } : {}) });
    }
  }
  const tactics = new Map<string, string>();
  for (const t of atlas) for (const tc of t.tactics ?? []) tactics.set(tc.id, tc.name);
  const labels: Record<string, string> = {
    monitor: alert.monitor,
    request_id: alert.requestId,
    hook: alert.hook,
  };
  for (const [k, v] of Object.entries(alert.meta ?? {})) labels[`meta_${labelKey(k)}`] = v;
  const steered = (alert.steer?.length ?? 0) > 0;
  return {
    "@timestamp": time,
    ecs: { version: ECS_VERSION },
    message: alertMessage(alert),
    ...(alert.tags !== undefined ? { tags: alert.tags } : {}),
    labels,
    event: {
      id: alert.id,
      kind: "alert",
      category: ["intrusion_detection"],
      type: steered ? ["info", "denied"] : ["info"],
      action: steered ? "steer" : "alert",
      severity: OCSF_SEVERITY[alert.severity].id,
      risk_score: RISK_SCORE[alert.severity],
      risk_score_norm: RISK_SCORE[alert.severity],
      dataset: "latentwatch.alert",
      module: "latentwatch",
      provider: alert.monitor,
    },
    rule: {
      id: alert.policy.id,
      name: alert.title,
      ...(alert.description !== undefined ? { description: alert.description } : {}),
      ...(alert.policy.version !== undefined ? { version: alert.policy.version } : {}),
      ruleset: alert.policy.file,
    },
    ...(atlas.length > 0
      ? {
        threat: {
          framework: "MITRE ATLAS",
          technique: {
            id: techniques.map((t) => t.id),
            name: techniques.map((t) => t.name ?? t.id),
            reference: techniques.map((t) => atlasUrl(t.id)),
            ...(subs.length > 0
              ? {
                subtechnique: {
                  id: subs.map((t) => t.id),
                  name: subs.map((t) => t.name ?? t.id),
                  reference: subs.map((t) => atlasUrl(t.id)),
                },
              }
              : {}),
          },
          ...(tactics.size > 0
            ? {
              tactic: {
                id: [...tactics.keys()],
                name: [...tactics.values()],
                reference: [...tactics.keys()].map(atlasUrl),
              },
            }
            : {}),
        },
      }
      : {}),
    observer: {
      vendor: product.vendor,
      product: product.name,
      version: product.version,
      type: "sensor",
      name: alert.monitor,
    },
    ...(alert.tenant !== undefined ? { organization: { id: alert.tenant } } : {}),
    gen_ai: { request: { model: alert.model } },
    ...(trace !== undefined ? { trace: { id: trace.traceId }, span: { id: trace.spanId } } : {}),
    latentwatch: {
      schema: alert.schema,
      ...alertCoreFields(alert),
      evidence: alert.evidence,
      ...(alert.latents !== undefined ? { latents: alert.latents } : {}),
      ...(alert.probes !== undefined ? { probes: alert.probes } : {}),
      ...(alert.steer !== undefined ? { steer: alert.steer } : {}),
      ...(alert.traceparent !== undefined ? { traceparent: alert.traceparent } : {}),
      ...(trace?.tracestate !== undefined ? { tracestate: trace.tracestate } : {}),
    },
  };
}
