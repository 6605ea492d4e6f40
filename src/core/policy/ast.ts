/**
 * The policy language (file version 2) as data: what a policy file says
 * after YAML parsing and schema validation, before compilation. Names
 * (macros, lists, latent labels) are still symbolic here; `compile.ts`
 * resolves them against the monitor's SAEs and probes. Pure.
 *
 * A v1 file (`when: {sae, latent, above}`) is a v2 file whose condition is a
 * single signal test with per-token pooling.
 *
 * @module
 */
import type { RedactMode } from "../redact.ts";

/** Alert severities, lowest first. */
export type Severity = "info" | "low" | "medium" | "high" | "critical";

/** Every {@linkcode Severity}, lowest first. */
export const SEVERITIES: readonly Severity[] = ["info", "low", "medium", "high", "critical"];

/** Where in the generation a rule looks: the prompt (prefill), the generation (decode), or both. */
export type Scope = "prompt" | "generation" | "both";

/** Where something was written, for errors and for alerts. */
export interface SourceRef {
  file: string;
  line: number;
  col?: number;
}

/** Which value a signal test reads. */
export type SignalRef =
  /** Latent `index` of SAE `sae`. */
  | { kind: "latent"; sae: string; index: number }
  /** The latent of SAE `sae` whose human label is `label` (resolved at compile time). */
  | { kind: "label"; sae: string; label: string }
  /** Any of several latents of SAE `sae` (a literal list or the name of a `list`); the test holds if it holds for one. */
  | { kind: "latents"; sae: string; indices: number[] | { list: string } }
  /** Score `index` of probe `probe` (present on every token). */
  | { kind: "probe"; probe: string; index: number }
  /**
   * A latent family of SAE `sae`: the concept of latent `of` as every member
   * carries it, per token `combine` over members of activation × (unit
   * decoder · unit decoder of `of`). Members are listed, or every latent
   * whose decoder cosine with `of`'s is at least `minCosine` (resolved from
   * the SAE's decoder at compile time).
   */
  | {
    kind: "family";
    sae: string;
    of: number;
    members: number[] | { minCosine: number };
    combine: "sum" | "max";
  };

/**
 * How per-token values become the value a test compares, at token t of a
 * request (positions t−N+1..t are the window; latents inactive on a token read 0):
 * - `token`: the value at t
 * - `max` / `mean`: max / mean over the last `window` tokens
 * - `rolling_mean_max`: the largest mean of any `window` consecutive tokens so far in the request
 * - `ema`: exponential moving average with half-life `half_life` tokens
 *   (`e_t = a·v_t + (1−a)·e_{t−1}`, `a = 1 − 2^(−1/half_life)`, `e` starts at 0)
 * - `count`: how many of the last `window` tokens had a value strictly above `above`
 */
export type Pool =
  | { kind: "token" }
  | { kind: "max"; window: number }
  | { kind: "mean"; window: number }
  | { kind: "rolling_mean_max"; window: number }
  | { kind: "ema"; halfLife: number }
  | { kind: "count"; window: number; above: number };

/** A test on one pooled signal: `pooled > above` or `pooled < below`. */
export interface SignalTest {
  kind: "test";
  signal: SignalRef;
  pool: Pool;
  op: "above" | "below";
  threshold: number;
  source: SourceRef;
  /** The condition's name in alerts and templates (unique within a rule); see `condition_names.ts` for the default. */
  name?: string;
}

/** A boolean condition over signal tests. */
export type Condition =
  | SignalTest
  | { kind: "all"; of: Condition[]; source: SourceRef }
  | { kind: "any"; of: Condition[]; source: SourceRef }
  | { kind: "not"; of: Condition; source: SourceRef }
  | { kind: "macro"; name: string; source: SourceRef };

/** A reusable named condition. */
export interface MacroDef {
  name: string;
  condition: Condition;
  source: SourceRef;
}

/** A named list of values (latent indices, tenants, models, metadata values). */
export interface ListDef {
  name: string;
  items: (string | number)[];
  source: SourceRef;
}

/** Values to match: literal values, or the name of a `list`. */
export type ValueSet = (string | number)[] | { list: string };

/**
 * A rule does not fire for a request that matches an exception: every key
 * given must match (tenant in the set, model in the set, each metadata key's
 * value in its set).
 */
export interface ExceptionDef {
  name?: string;
  tenant?: ValueSet;
  model?: ValueSet;
  metadata?: Record<string, ValueSet>;
  source: SourceRef;
}

/** A steering command the sidecar sends back to the model server for this request. */
export type SteerAction =
  /** Clamp latent `latent` of SAE `sae` to `value` (along its decoder direction). */
  | { kind: "clamp"; sae: string; latent: number; value: number }
  /** Remove latent `latent`'s decoder contribution. */
  | { kind: "ablate"; sae: string; latent: number }
  /** Add `scale` × a vector: a latent's decoder direction or a literal vector. */
  | {
    kind: "add";
    scale: number;
    direction: { sae: string; latent: number } | { vector: number[] };
  }
  /** Cap the projection onto a direction at `max`. */
  | { kind: "cap"; max: number; direction: { sae: string; latent: number } | { vector: number[] } }
  /** Stop the generation. */
  | { kind: "abort"; reason?: string };

/** What a rule does when it fires. */
export type Action = { kind: "alert" } | { kind: "steer"; steer: SteerAction };

/** How often a rule may fire. */
export interface Throttle {
  /**
   * After a rule fires for a dedup key, it stays quiet for that key for this
   * many tokens or seconds, or for the rest of the request (`request`, the default),
   * or never (`none`: fire on every frame where it holds).
   */
  suppress: { kind: "request" } | { kind: "none" } | { kind: "tokens"; n: number } | {
    kind: "seconds";
    s: number;
  };
  /** Template of the key suppression groups by; default `{request_id}`. */
  dedupKey: string;
  /** At most `alerts` firings of this rule per `seconds`, across all requests; the rest are counted, not sent. */
  rateLimit?: { alerts: number; seconds: number };
}

/** One rule. */
export interface RuleDef {
  id: string;
  title: string;
  severity: Severity;
  /** Template: `{rule}`, `{title}`, `{severity}`, `{model}`, `{hook}`, `{request_id}`, `{tenant}`, `{value}`, `{signal}`, `{label}`, `{tokens}`, `{text}`, `{meta.<key>}`, `{cond.<name>.<field>}`. */
  description?: string;
  /** Free tags; MITRE ATLAS technique ids (`AML.T0051`, `AML.T0051.000`) are recognised as such. */
  tags: string[];
  scope: Scope;
  condition: Condition;
  exceptions: ExceptionDef[];
  actions: Action[];
  throttle: Throttle;
  /** False to keep a rule in the file without running it. */
  enabled: boolean;
  /** Redaction of the token text in this rule's alerts (absent: `none`; the stricter setting wins). */
  redact?: RedactMode;
  source: SourceRef;
}

/** One parsed policy file. */
export interface PolicyFileDef {
  file: string;
  version: 1 | 2;
  rules: RuleDef[];
  macros: MacroDef[];
  lists: ListDef[];
}
