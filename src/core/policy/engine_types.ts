/**
 * What the policy engine takes, returns and keeps: the batch it evaluates,
 * the firing it returns, its counters and options, and the per-request state
 * its parts share (engine.ts, firing_gate.ts, rule_tables.ts,
 * request_states.ts).
 *
 * @module
 */
import type { LatentTable } from "../latent_rows.ts";
import type { SteerAction } from "./ast.ts";
import type { CompiledRule, CompiledTest } from "./compiled.ts";
import type { PoolState } from "./pool.ts";
import type { TemplateFields } from "./template.ts";

/** Who a batch belongs to. */
export interface RequestContext {
  requestId: string;
  model: string;
  tenant?: string;
  meta?: Record<string, string>;
  /** `prefill` (prompt) or `decode` (generation); absent counts for both. */
  phase?: "prefill" | "decode";
  /** Hook the activations were read at, for `{hook}` in templates. */
  hook?: string;
}

/** One frame's tokens of one request. */
export interface TokenBatch {
  ctx: RequestContext;
  /** Absolute position of the first token in the request. */
  position: number;
  tokens: number;
  /** Encoder id → per-token rows (a frame's rows may be part of a larger batch's table). */
  latents: ReadonlyMap<string, LatentTable>;
  /** This frame's first row in the `latents` tables. */
  firstRow: number;
  tokenText?: string[];
}

/** A rule that fired in one batch. */
export interface Firing {
  rule: CompiledRule;
  requestId: string;
  /** Absolute positions in this batch where the rule fired, ascending. */
  positions: number[];
  /** Pooled value of the condition that completed the rule, at `positions[0]`. */
  value: number;
  signal: {
    encoder: string;
    index: number;
    label?: string;
    kind: "latent" | "probe";
    /** A family test: its members, weights and combine (`value` is the family's). */
    family?: CompiledTest["family"];
  };
  /** Index in `rule.conditions` of the condition that completed the rule at `positions[0]`. */
  completedBy: number;
  /** Pooled value of each of `rule.conditions` at `positions[0]`. */
  conditionValues: readonly number[];
  /** The rule's description template rendered ("" when the rule has none). */
  description: string;
  /** The fields `description` was rendered with (absent when the rule has none), for redaction. */
  descriptionFields?: TemplateFields;
  dedupKey: string;
  alert: boolean;
  steer: readonly SteerAction[];
}

/** Counters since the engine was created. */
export interface EngineStats {
  activeRequests: number;
  evicted: { ttl: number; capacity: number };
  /** Requests whose state went at `PolicyEngine.endRequest`. */
  ended: number;
  suppressed: number;
  rateLimited: number;
  excepted: number;
}

/** Options of the policy engine. */
export interface PolicyEngineOptions {
  /** At most this many requests have state; the least recently seen goes first. @default 100000 */
  maxRequests?: number;
  /** State of a request with no frame for this long is evicted by `sweep()`. @default 600000 */
  ttlMs?: number;
  /** Clock in milliseconds (TTL, seconds suppression, rate limits). @default Date.now */
  now?: () => number;
}

/** A count or duration option out of range. */
export class PolicyEngineOptionError extends RangeError {
  override name = "PolicyEngineOptionError";
}

/** One rule's state in one request. */
export interface RuleState {
  /** Per test of the rule, created when first touched. */
  tests: (PoolState | undefined)[];
  /** Dedup key → first position of the last firing (request and tokens suppression). */
  fired?: Map<string, number>;
  /** Bit k: condition k held at the rule's previous evaluation (rules of 2..31 conditions). */
  held: number;
}

/** One request's state. */
export interface RequestState {
  lastSeen: number;
  /** First position in scope: prompt, generation, both (NaN until seen). */
  start: [number, number, number];
  /** Rule index in the current set → state. */
  rules: Map<number, RuleState>;
}

/** What one rule held on in the current batch. */
export interface Held {
  positions: number[];
  /** Per position, the pooled value of each condition (stride: the rule's condition count). */
  values: number[];
  /** Per position, the condition that completed the rule. */
  witnesses: number[];
}
