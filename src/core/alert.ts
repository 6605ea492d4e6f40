/**
 * The alert record (native JSON, schema `latentwatch.alert/v1`) and how one
 * is built from the rule matches of one frame. Pure.
 *
 * @module
 */
import type { Pool, Severity, SteerAction } from "./policy/ast.ts";

/** One token on which a rule fired. */
export interface AlertEvidence {
  /** Absolute token position in the request. */
  position: number;
  /** Activation of the watched latent on this token. */
  value: number;
  /** Token id and text, when the tap sent them. */
  tokenId?: number;
  text?: string;
  /**
   * The token's strongest latents of the alert's SAE, from a full encode of
   * its activation (monitor `evidence.top_latents`), by value descending.
   */
  topLatents?: AlertTopLatent[];
}

/** One of a token's strongest latents, with its label when the SAE has labels. */
export interface AlertTopLatent {
  index: number;
  value: number;
  label?: string;
}

/**
 * One latent the rule's condition reads, with its activation on the first
 * firing token (`tokens.start`). A latent inactive there reads 0.
 */
export interface AlertLatentValue {
  sae: string;
  index: number;
  /** Human label, when one is loaded for the SAE. */
  label?: string;
  /** Activation on the first firing token (raw, before pooling). */
  value: number;
  /** Threshold of the first `above` test on this latent, when there is one. */
  threshold?: number;
  /** A member of a `family` test: its concept latent and its decoder cosine with it (the value's weight). */
  family?: { of: number; cosine: number };
}

/** One probe score the rule's condition reads, on the first firing token. */
export interface AlertProbeScore {
  probe: string;
  index: number;
  label?: string;
  value: number;
  threshold?: number;
}

/**
 * One condition (leaf signal test) of the rule, named, with its pooled value
 * on the first firing token (`tokens.start`).
 */
export interface AlertCondition {
  /** Written `name:`, or the default name (see docs/alerts.md). */
  name: string;
  /** SAE id, or probe id when `signal` is "probe". */
  sae: string;
  /** Latent index, or probe score index. */
  index: number;
  label?: string;
  signal?: "probe";
  /** A `family` test (`index` is its concept latent): how many members it combines, and how. */
  family?: { members: number; combine: "sum" | "max" };
  /** The pooling: `{ kind: "max", window: 8 }`, `{ kind: "ema", halfLife: 4 }`, … */
  pool: Pool;
  op: "above" | "below";
  threshold: number;
  /** Pooled value on the first firing token. */
  value: number;
  /** Whether the test held there. */
  held: boolean;
  /** Set on the condition that completed the rule (the one `latent` names). */
  completed?: true;
}

/** W3C trace context of the request, split out of `traceparent` (see {@linkcode traceContext}). */
export interface AlertTrace {
  /** 32 lower-case hex digits, not all zero. */
  traceId: string;
  /** Parent span id: 16 lower-case hex digits, not all zero. */
  spanId: string;
  /** The `sampled` trace flag. */
  sampled: boolean;
  /** The `tracestate` header, verbatim, when the tap sent one. */
  tracestate?: string;
}

/** A MITRE ATLAS technique named by a rule tag (see `render/atlas.ts`). */
export interface AlertAtlasTechnique {
  /** `AML.Tdddd` or `AML.Tdddd.ddd`, as tagged. */
  id: string;
  /** Technique (or sub-technique) name, when the id is in the bundled catalogue. */
  name?: string;
  /** Tactics of the technique (of its parent for a sub-technique), when known. */
  tactics?: { id: string; name: string }[];
}

/** An alert, as published (JSON) to the alert stream. */
export interface Alert {
  schema: "latentwatch.alert/v1";
  /** Stable id: the same frame and rule always give the same id (JetStream dedup key). */
  id: string;
  /** ISO 8601 time the alert was raised. */
  time: string;
  monitor: string;
  /** The rule, where it is written, and the version (hash) of the rule set in force. */
  policy: { id: string; file: string; line: number; version?: string };
  severity: Severity;
  title: string;
  /** The rule's description template, rendered for this alert. */
  description?: string;
  /** The rule's tags (MITRE ATLAS technique ids among them). */
  tags?: string[];
  model: string;
  hook: string;
  requestId: string;
  tenant?: string;
  /** Request metadata from the tap (`Lw-Meta-*`). */
  meta?: Record<string, string>;
  phase?: "prefill" | "decode";
  /** Token span of the firing tokens: `[start, end)` positions. */
  tokens: { start: number; end: number; count: number };
  /**
   * The signal that fired: the condition that completed the rule
   * (`completedBy`), latent `index` of SAE `sae` (with its human label
   * when one is loaded), or score `index` of probe `sae` when `signal` is "probe".
   */
  latent: {
    sae: string;
    index: number;
    /** Threshold of the test that fired, when it is a plain `above` test. */
    threshold?: number;
    max: number;
    label?: string;
    signal?: "probe";
  };
  evidence: AlertEvidence[];
  /** Steering commands the rule asked for on this request. */
  steer?: SteerAction[];
  /** The W3C `traceparent` header of the request, verbatim. */
  traceparent?: string;
  /** The latents the rule reads, on the first firing token (see {@linkcode AlertLatentValue}). */
  latents?: AlertLatentValue[];
  /** The probe scores the rule reads, on the first firing token. */
  probes?: AlertProbeScore[];
  /** Trace ids split out of `traceparent` (and `tracestate`); absent when it is missing or malformed. */
  trace?: AlertTrace;
  /** MITRE ATLAS techniques among `tags`, with names and tactics (see `render/atlas.ts`). */
  atlas?: AlertAtlasTechnique[];
  /** Every condition of the rule, in rule order (see {@linkcode AlertCondition}). */
  conditions?: AlertCondition[];
  /** Name of the condition that completed the rule (the one `latent` names). */
  completedBy?: string;
  /**
   * How the token text in `evidence` (and the description's `{text}`) was
   * redacted (see `redact.ts`); absent: verbatim.
   */
  redaction?: "hash" | "tokens";
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Split a W3C Trace Context `traceparent` header into trace id, parent span
 * id and the sampled flag. Returns `undefined` for a malformed header (version
 * `ff`, all-zero ids, upper-case hex, a version-00 header with trailing data),
 * as the W3C spec asks a receiver to ignore it.
 *
 * @example
 * ```ts
 * traceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
 * // { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", sampled: true }
 * ```
 */
export function traceContext(
  traceparent: string | undefined,
  tracestate?: string,
): AlertTrace | undefined {
  if (traceparent === undefined) return undefined;
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return {
    traceId,
    spanId,
    sampled: (parseInt(flags, 16) & 1) === 1,
    ...(tracestate ? { tracestate } : {}),
  };
}

/**
 * A stable 128-bit id (32 hex digits) for `key`: two independent 64-bit
 * FNV-1a lanes. Deterministic so that a re-sent frame or a retried publish
 * yields the same id and JetStream keeps the alert once.
 *
 * @example
 * ```ts
 * stableId("demo|req-1|prompt-injection|12"); // "9f…" (32 hex digits)
 * ```
 */
export function stableId(key: string): string {
  const bytes = new TextEncoder().encode(key);
  return fnv1a64(bytes, 0xcbf2, 0x9ce4, 0x8422, 0x2325) +
    fnv1a64(bytes, 0x8422, 0x2325, 0xcbf2, 0x9ce4);
}

/**
 * 64-bit FNV-1a over `bytes` from the offset basis given as four 16-bit limbs
 * (most significant first), as 16 hex digits. Exact 64-bit arithmetic in
 * 16-bit limbs (no BigInt), so hashing a large rule (a megabyte of
 * canonical JSON) takes milliseconds.
 */
function fnv1a64(bytes: Uint8Array, a3: number, a2: number, a1: number, a0: number): string {
  let h0 = a0, h1 = a1, h2 = a2, h3 = a3;
  for (let i = 0; i < bytes.length; i++) {
    h0 ^= bytes[i];
    // h × (2^40 + 0x1b3) mod 2^64
    const t0 = h0 * 0x1b3;
    let t1 = h1 * 0x1b3;
    let t2 = h2 * 0x1b3 + ((h0 & 0xff) << 8);
    let t3 = h3 * 0x1b3 + ((h0 >>> 8) | ((h1 & 0xff) << 8));
    t1 += t0 >>> 16;
    h0 = t0 & 0xffff;
    t2 += t1 >>> 16;
    h1 = t1 & 0xffff;
    t3 += t2 >>> 16;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  const hex = (n: number) => n.toString(16).padStart(4, "0");
  return hex(h3) + hex(h2) + hex(h1) + hex(h0);
}

/**
 * Alert id for a rule firing in a frame: a function of the monitor, request,
 * rule and first firing position only.
 *
 * @example
 * ```ts
 * alertId("demo", "req-1", "prompt-injection", 12);
 * ```
 */
export function alertId(
  monitor: string,
  requestId: string,
  ruleId: string,
  position: number,
): string {
  return stableId(`${monitor}\u0000${requestId}\u0000${ruleId}\u0000${position}`);
}
