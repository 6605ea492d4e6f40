/**
 * What stands between a rule that held and the firing it returns: its
 * exceptions, its suppression per dedup key, its rate limit, and the fields
 * its dedup key and description are rendered from. The policy engine asks it
 * once per rule that held in a batch; the semantics are the engine's
 * (engine.ts, "Exceptions", "Suppression", "Rate limit").
 *
 * @module
 */
import type { CompiledRule } from "./compiled.ts";
import type { Firing, Held, RequestContext, RuleState, TokenBatch } from "./engine_types.ts";
import { renderTemplate } from "./template.ts";
import { conditionFields } from "./condition_fields.ts";
import { joinTokenText } from "../render/token_text.ts";

/** Options of {@linkcode FiringGate}. */
export interface FiringGateOptions {
  /** At most this many seconds-suppression keys are kept; the oldest goes first. */
  maxKeys: number;
  /** Clock in milliseconds. */
  now: () => number;
}

/** Firings the gate stopped, by why. */
export interface GateCounts {
  suppressed: number;
  rateLimited: number;
  excepted: number;
}

/**
 * Whether one of `rule`'s exceptions covers `ctx` (every key an exception
 * gives must match).
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * declare const rule: CompiledRule;
 * if (isExcepted(rule, { requestId: "r1", model: "gpt2", tenant: "acme" })) console.log("quiet");
 * ```
 */
export function isExcepted(rule: CompiledRule, ctx: RequestContext): boolean {
  for (const e of rule.exceptions) {
    if (e.tenant && (ctx.tenant === undefined || !e.tenant.has(ctx.tenant))) continue;
    if (e.model && !e.model.has(ctx.model)) continue;
    if (
      e.metadata &&
      !e.metadata.every(([k, set]) => ctx.meta?.[k] !== undefined && set.has(ctx.meta[k]))
    ) continue;
    return true;
  }
  return false;
}

/**
 * The fields a rule's templates are rendered with, for the firing that
 * starts at `h.positions[from]`.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import type { Held, TokenBatch } from "./engine_types.ts";
 * declare const rule: CompiledRule, batch: TokenBatch, held: Held;
 * const fields = firingFields(rule, batch, held, 0);
 * console.log(fields.rule, fields.tokens);
 * ```
 */
export function firingFields(
  rule: CompiledRule,
  batch: TokenBatch,
  h: Held,
  from: number,
): Record<string, string | number | undefined> {
  const test = rule.tests[rule.conditions[h.witnesses[from]].test];
  const { ctx } = batch;
  const first = h.positions[from];
  const last = h.positions[h.positions.length - 1];
  const fields: Record<string, string | number | undefined> = {
    rule: rule.id,
    title: rule.def.title,
    severity: rule.def.severity,
    model: ctx.model,
    hook: ctx.hook,
    request_id: ctx.requestId,
    tenant: ctx.tenant,
    value: h.values[from * rule.conditions.length + h.witnesses[from]],
    signal: `${test.encoder}:${test.index}`,
    label: test.label,
    tokens: first === last ? `${first}` : `${first}-${last}`,
    // the one rendering of token text (src/core/render/token_text.ts)
    text: batch.tokenText
      ? joinTokenText(
        h.positions.slice(from).map((p) => ({
          position: p,
          text: batch.tokenText![p - batch.position],
        })),
      )
      : undefined,
  };
  for (const k of rule.metaKeys) fields[`meta.${k}`] = ctx.meta?.[k];
  if (rule.conditions.length > 0) {
    const n = rule.conditions.length;
    conditionFields(rule, h.values.slice(from * n, from * n + n), fields);
  }
  return fields;
}

/**
 * Exceptions, suppression and rate limits of the rules of a policy set, with
 * the seconds-suppression keys and token buckets they keep across requests.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import type { Held, RuleState, TokenBatch } from "./engine_types.ts";
 * declare const rule: CompiledRule, state: RuleState, batch: TokenBatch, held: Held;
 * const gate = new FiringGate({ maxKeys: 100_000, now: Date.now });
 * const firing = gate.fire(rule, state, batch, held); // null: stopped, and counted
 * console.log(firing?.positions, gate.counts.suppressed);
 * ```
 */
export class FiringGate {
  readonly #max: number;
  readonly #now: () => number;
  /** `hash \0 key` → time (ms) the key stays quiet until (seconds suppression). */
  readonly #quiet = new Map<string, number>();
  /** Rule hash → token bucket. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  /** Firings stopped since the gate was made. */
  readonly counts: GateCounts = { suppressed: 0, rateLimited: 0, excepted: 0 };

  constructor(opts: FiringGateOptions) {
    this.#max = opts.maxKeys;
    this.#now = opts.now;
  }

  /**
   * The firing of `rule` in `batch` from what it held on (`h`), or null when
   * an exception, its suppression or its rate limit stops it (counted).
   * `rs` is the rule's state in the batch's request: request and tokens
   * suppression record their keys there.
   */
  fire(rule: CompiledRule, rs: RuleState, batch: TokenBatch, h: Held): Firing | null {
    if (rule.exceptions.length > 0 && isExcepted(rule, batch.ctx)) {
      this.counts.excepted++;
      return null;
    }
    const { throttle } = rule.def;
    const key = throttle.dedupKey === "{request_id}"
      ? batch.ctx.requestId
      : renderTemplate(throttle.dedupKey, firingFields(rule, batch, h, 0));
    const sup = throttle.suppress;
    const now = sup.kind === "seconds" || throttle.rateLimit ? this.#now() : 0;
    const quietKey = `${rule.hash}\u0000${key}`;
    const from = this.#firstUnsuppressed(rule, rs, h, { key, quietKey, now });
    if (from < 0) {
      this.counts.suppressed++;
      return null;
    }
    if (throttle.rateLimit && !this.#take(rule, now)) {
      this.counts.rateLimited++;
      return null;
    }
    if (sup.kind === "request" || sup.kind === "tokens") {
      (rs.fired ??= new Map()).set(key, h.positions[from]);
    } else if (sup.kind === "seconds") {
      this.#quiet.delete(quietKey);
      this.#quiet.set(quietKey, now + sup.s * 1000);
      if (this.#quiet.size > this.#max) {
        const [oldest] = this.#quiet.keys();
        this.#quiet.delete(oldest);
      }
    }
    return this.#firing(rule, batch, h, { key, from });
  }

  /** Index in `h.positions` of the first position suppression lets through; -1 for none. */
  #firstUnsuppressed(
    rule: CompiledRule,
    rs: RuleState,
    h: Held,
    at: { key: string; quietKey: string; now: number },
  ): number {
    const sup = rule.def.throttle.suppress;
    if (sup.kind === "request") return rs.fired?.has(at.key) ? -1 : 0;
    if (sup.kind === "tokens") {
      const last = rs.fired?.get(at.key);
      return last === undefined ? 0 : h.positions.findIndex((p) => p > last + sup.n);
    }
    if (sup.kind === "seconds") {
      const until = this.#quiet.get(at.quietKey);
      return until !== undefined && at.now < until ? -1 : 0;
    }
    return 0;
  }

  /** Takes a token from the rule's bucket (refilled for the time since its last use). */
  #take(rule: CompiledRule, now: number): boolean {
    const { alerts, seconds } = rule.def.throttle.rateLimit!;
    let b = this.#buckets.get(rule.hash);
    if (!b) this.#buckets.set(rule.hash, b = { tokens: alerts, at: now });
    b.tokens = Math.min(alerts, b.tokens + ((now - b.at) / 1000) * (alerts / seconds));
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  #firing(
    rule: CompiledRule,
    batch: TokenBatch,
    h: Held,
    { key, from }: { key: string; from: number },
  ): Firing {
    const completedBy = h.witnesses[from];
    const test = rule.tests[rule.conditions[completedBy].test];
    const n = rule.conditions.length;
    const conditionValues = h.values.slice(from * n, from * n + n);
    const fields = rule.def.description ? firingFields(rule, batch, h, from) : undefined;
    return {
      rule,
      requestId: batch.ctx.requestId,
      positions: from === 0 ? h.positions : h.positions.slice(from),
      value: conditionValues[completedBy],
      completedBy,
      conditionValues,
      signal: {
        encoder: test.encoder,
        index: test.index,
        ...(test.label !== undefined ? { label: test.label } : {}),
        kind: test.kind,
        ...(test.family ? { family: test.family } : {}),
      },
      description: fields ? renderTemplate(rule.def.description!, fields) : "",
      ...(fields ? { descriptionFields: fields } : {}),
      dedupKey: key,
      alert: rule.alert,
      steer: rule.steer,
    };
  }

  /**
   * Keep the keys and buckets of the rules whose hash is in `hashes` (a
   * swapped-in set's), and drop the rest.
   */
  retain(hashes: { has(hash: string): boolean }): void {
    for (const key of this.#buckets.keys()) if (!hashes.has(key)) this.#buckets.delete(key);
    for (const key of this.#quiet.keys()) {
      if (!hashes.has(key.slice(0, key.indexOf("\u0000")))) this.#quiet.delete(key);
    }
  }

  /** Forget the seconds-suppression keys whose quiet ended by `now`. */
  sweep(now: number): void {
    for (const [key, until] of this.#quiet) if (until <= now) this.#quiet.delete(key);
  }
}
