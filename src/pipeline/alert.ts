/**
 * Alert building: one firing of the policy engine, with the frame it fired
 * on and the batch's latents, turned into the `Alert` every sink receives.
 * A pure function of its input (the time is an input too), so `serve`,
 * `replay` and `policy test` build the very same alert.
 *
 * @module
 */
import {
  type Alert,
  type AlertCondition,
  type AlertEvidence,
  alertId,
  type AlertLatentValue,
  type AlertProbeScore,
  traceContext,
} from "../core/alert.ts";
import { atlasOf } from "../core/render/atlas.ts";
import {
  redactAlert,
  type RedactOptions,
  stricterRedaction,
  withDescriptionSource,
} from "../core/redact.ts";
import type { Frame } from "../core/frame/format.ts";
import type { CompiledRule } from "../core/policy/compile.ts";
import { familyValue } from "../core/family.ts";
import type { Firing } from "../core/policy/engine.ts";
import { NO_LATENTS, type SparseLatents } from "../core/sae.ts";
import { type LatentTable, rowOf } from "../core/latent_rows.ts";
import { conditionHolds } from "../core/policy/condition_fields.ts";

/** SAE id → latent index → label. */
export type LatentLabels = ReadonlyMap<string, ReadonlyMap<number, string>>;

/** What {@linkcode buildAlert} reads. */
export interface AlertInput {
  /** The monitor's name. */
  monitor: string;
  /** The frame the rule fired on. */
  frame: Frame;
  /** Row of the frame's first token in `latents`. */
  firstRow: number;
  /** The batch's latents: encoder id → one entry per token row. */
  latents: ReadonlyMap<string, LatentTable>;
  firing: Firing;
  /** The policy set's version (its hash). */
  policyVersion: string;
  /** Latent labels, when the signal has none of its own. */
  labels?: LatentLabels;
  /** When the alert was raised (ISO 8601). */
  time: string;
  /**
   * The monitor's redaction (`redaction.default`, and the key of `hash`
   * mode); the rule's `redact` and this combine, the stricter winning.
   * @default { mode: "none" }
   */
  redaction?: RedactOptions;
}

/**
 * The id of the alert (and prefix of the steer commands) a firing raises:
 * stable for (monitor, request, rule, first position), so a redelivered
 * alert deduplicates.
 *
 * @example
 * ```ts
 * import type { Firing } from "../core/policy/engine.ts";
 * import { firingId } from "./alert.ts";
 * declare const firing: Firing;
 * firingId("demo", firing); // "a1b2…"
 * ```
 */
export function firingId(monitor: string, firing: Firing): string {
  return alertId(monitor, firing.requestId, firing.rule.id, firing.positions[0]);
}

/**
 * The alert a firing raises: the flagged tokens (value, token id and text),
 * every signal the rule reads as it stood on the first flagged token, the
 * request's context, ATT&CK-style atlas tags and trace context. Evidence
 * `topLatents` are attached later (`./evidence.ts`). Token text (evidence
 * and the description's `{text}`) is redacted by the stricter of the rule's
 * `redact` and `input.redaction` (see `core/redact.ts`).
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import type { Firing } from "../core/policy/engine.ts";
 * import { buildAlert } from "./alert.ts";
 * declare const frame: Frame;
 * declare const firing: Firing;
 * const alert = buildAlert({
 *   monitor: "demo", frame, firstRow: 0, latents: new Map(), firing,
 *   policyVersion: "v1", time: new Date().toISOString(),
 * });
 * alert.tokens.start === firing.positions[0]; // true
 * ```
 */
export function buildAlert(input: AlertInput): Alert {
  const alert = unredactedAlert(input);
  const { firing } = input;
  if (firing.descriptionFields && firing.rule.def.description) {
    withDescriptionSource(alert, {
      template: firing.rule.def.description,
      fields: firing.descriptionFields,
    });
  }
  const floor = input.redaction ?? { mode: "none" };
  return redactAlert(alert, {
    ...floor,
    mode: stricterRedaction(firing.rule.def.redact ?? "none", floor.mode),
  });
}

function unredactedAlert(input: AlertInput): Alert {
  const { frame, firstRow, latents, firing, labels } = input;
  const { rule, signal } = firing;
  const def = rule.def;
  const rows = latents.get(signal.encoder);
  const evidence: AlertEvidence[] = firing.positions.map((position) => {
    const i = position - frame.position;
    return {
      position,
      value: !rows
        ? firing.value
        : signal.family
        ? familyValue(rowOf(rows, firstRow + i) ?? NO_LATENTS, signal.family)
        : valueAt(rowOf(rows, firstRow + i) ?? NO_LATENTS, signal.index),
      ...(frame.tokenIds ? { tokenId: frame.tokenIds[i] } : {}),
      ...(frame.tokenText ? { text: frame.tokenText[i] } : {}),
    };
  });
  const start = firing.positions[0];
  const label = signal.label ?? labels?.get(signal.encoder)?.get(signal.index);
  // the threshold of the condition that completed the rule (the headline)
  const completed = rule.conditions[firing.completedBy];
  const threshold = completed?.op === "above"
    ? completed.threshold
    : thresholdOf(rule, signal.encoder, signal.index);
  // every signal the rule reads, as it stood on the first firing token
  const row = firstRow + (start - frame.position);
  const readings: AlertLatentValue[] = [];
  const scores: AlertProbeScore[] = [];
  const seen = new Set<string>();
  for (const t of rule.tests) {
    const key = `${t.kind}:${t.encoder}:${t.index}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const value = valueAt(rowOf(latents.get(t.encoder), row) ?? NO_LATENTS, t.index);
    const tLabel = t.label ?? labels?.get(t.encoder)?.get(t.index);
    const tThreshold = thresholdOf(rule, t.encoder, t.index);
    const extra = {
      ...(tLabel !== undefined ? { label: tLabel } : {}),
      ...(tThreshold !== undefined ? { threshold: tThreshold } : {}),
    };
    if (t.kind === "probe") scores.push({ probe: t.encoder, index: t.index, value, ...extra });
    else readings.push({ sae: t.encoder, index: t.index, value, ...extra });
    // a family lists each member with its raw activation and its weight
    t.family?.members.forEach((m, k) => {
      if (m === t.index || seen.has(`${t.kind}:${t.encoder}:${m}`)) return;
      seen.add(`${t.kind}:${t.encoder}:${m}`);
      const mLabel = labels?.get(t.encoder)?.get(m);
      readings.push({
        sae: t.encoder,
        index: m,
        value: valueAt(rowOf(latents.get(t.encoder), row) ?? NO_LATENTS, m),
        ...(mLabel !== undefined ? { label: mLabel } : {}),
        family: { of: t.index, cosine: t.family!.weights[k] },
      });
    });
  }
  const conditions = alertConditions(firing, labels);
  const trace = traceContext(frame.traceparent, frame.tracestate);
  const atlas = atlasOf(def.tags);
  return {
    schema: "latentwatch.alert/v1",
    id: firingId(input.monitor, firing),
    time: input.time,
    monitor: input.monitor,
    policy: {
      id: rule.id,
      file: def.source.file,
      line: def.source.line,
      version: input.policyVersion,
    },
    severity: def.severity,
    title: def.title,
    ...(firing.description ? { description: firing.description } : {}),
    ...(def.tags.length > 0 ? { tags: def.tags } : {}),
    model: frame.model,
    hook: frame.hook,
    requestId: frame.requestId,
    ...(frame.tenant ? { tenant: frame.tenant } : {}),
    ...(frame.meta ? { meta: frame.meta } : {}),
    ...(frame.phase ? { phase: frame.phase } : {}),
    tokens: {
      start,
      end: firing.positions[firing.positions.length - 1] + 1,
      count: evidence.length,
    },
    latent: {
      sae: signal.encoder,
      index: signal.index,
      ...(threshold !== undefined ? { threshold } : {}),
      max: firing.value,
      ...(label !== undefined ? { label } : {}),
      ...(signal.kind === "probe" ? { signal: "probe" as const } : {}),
    },
    evidence,
    ...(readings.length > 0 ? { latents: readings } : {}),
    ...(scores.length > 0 ? { probes: scores } : {}),
    ...(conditions.length > 0
      ? { conditions, completedBy: rule.conditions[firing.completedBy].name }
      : {}),
    ...(atlas.length > 0 ? { atlas } : {}),
    ...(firing.steer.length > 0 ? { steer: [...firing.steer] } : {}),
    ...(frame.traceparent ? { traceparent: frame.traceparent } : {}),
    ...(trace ? { trace } : {}),
  };
}

/**
 * Every condition of the firing's rule, named, with its pooled value on the
 * first firing token; the one that completed the rule is marked.
 *
 * @example
 * ```ts
 * import type { Firing } from "../core/policy/engine.ts";
 * import { alertConditions } from "./alert.ts";
 * declare const firing: Firing;
 * alertConditions(firing).find((c) => c.completed)?.name;
 * ```
 */
export function alertConditions(firing: Firing, labels?: LatentLabels): AlertCondition[] {
  const { rule } = firing;
  return rule.conditions.map((c, k) => {
    const t = rule.tests[c.test];
    const label = t.label ?? labels?.get(t.encoder)?.get(t.index);
    const value = firing.conditionValues[k];
    return {
      name: c.name,
      sae: t.encoder,
      index: t.index,
      ...(label !== undefined ? { label } : {}),
      ...(t.kind === "probe" ? { signal: "probe" as const } : {}),
      ...(t.family
        ? { family: { members: t.family.members.length, combine: t.family.combine } }
        : {}),
      pool: t.pool,
      op: c.op,
      threshold: c.threshold,
      value,
      held: conditionHolds(c, value),
      ...(k === firing.completedBy ? { completed: true as const } : {}),
    };
  });
}

/**
 * Value of latent `index` in one token's sparse latents (0 when inactive).
 *
 * @example
 * ```ts
 * import { valueAt } from "./alert.ts";
 * valueAt({ indices: Uint32Array.of(2, 5), values: Float32Array.of(1.5, 3) }, 5); // 3
 * ```
 */
export function valueAt(row: SparseLatents, index: number): number {
  let lo = 0;
  let hi = row.indices.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (row.indices[mid] < index) lo = mid + 1;
    else hi = mid;
  }
  return row.indices[lo] === index ? row.values[lo] : 0;
}

/**
 * Threshold of the first `above` test on (encoder, index) in a rule's
 * condition (undefined when none).
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "../core/policy/compile.ts";
 * import { thresholdOf } from "./alert.ts";
 * declare const rule: CompiledRule;
 * thresholdOf(rule, "demo-res", 0); // 2, for `latent: 0 above 2`
 * ```
 */
export function thresholdOf(
  rule: CompiledRule,
  encoder: string,
  index: number,
): number | undefined {
  const walk = (c: CompiledRule["condition"]): number | undefined => {
    if (c.kind === "test") {
      const t = rule.tests[c.test];
      return t.encoder === encoder && t.index === index && c.op === "above"
        ? c.threshold
        : undefined;
    }
    if (c.kind === "not") return undefined;
    for (const sub of c.of) {
      const found = walk(sub);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return walk(rule.condition);
}
