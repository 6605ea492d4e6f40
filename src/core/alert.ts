/**
 * The alert record (native JSON, schema `latentwatch.alert/v1`) and how one
 * is built from the rule matches of one frame. Pure.
 *
 * @module
 */
import type { Severity, SteerAction } from "./policy/ast.ts";

/** One token on which a rule fired. */
export interface AlertEvidence {
  /** Absolute token position in the request. */
  position: number;
  /** Activation of the watched latent on this token. */
  value: number;
  /** Token id and text, when the tap sent them. */
  tokenId?: number;
  text?: string;
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
   * The signal that fired: latent `index` of SAE `sae` (with its human label
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
  traceparent?: string;
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
  const lane = (offset: bigint) => {
    let h = offset;
    for (const b of bytes) {
      h ^= BigInt(b);
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
    }
    return h.toString(16).padStart(16, "0");
  };
  return lane(0xcbf29ce484222325n) + lane(0x84222325cbf29ce4n);
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
