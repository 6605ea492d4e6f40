/**
 * The policy engine: runs a {@linkcode CompiledPolicySet} over the frames of
 * many concurrent requests, keeping per-request pooling state, and says
 * which rules fire. Pure: time comes from an injected clock.
 *
 * Semantics:
 * - **Tokens and phases.** A batch is one frame of one request: `tokens`
 *   tokens from absolute `position`, in order; frames of a request arrive in
 *   order. A rule's scope picks tokens by the frame's phase: `prompt` sees
 *   prefill frames, `generation` decode frames, `both` all; a frame without a
 *   phase counts for every scope. Tokens out of a rule's scope do not exist
 *   for it.
 * - **Pooling** (ast.ts `Pool`): a latent not active on a token reads 0. Each
 *   rule's window starts at the request's first token in its scope (no
 *   tokens before it: the window at `t` holds `min(N, t−start+1)` tokens and
 *   a mean divides by that); positions skipped by a lost frame read 0. EMA
 *   starts at 0; rolling_mean_max is the max of the rolling means so far.
 *   State lives per request and per rule test (two tests on one signal and
 *   pooling in a rule share it).
 * - **Triggers (the index).** A rule is evaluated on a token only when the
 *   signal of one of its trigger tests (see compile.ts) is present on it: an
 *   active SAE latent, or a probe (every token). Pooling state of every test
 *   is updated on each token its signal is active, and the tokens in between
 *   are accounted for lazily (pool.ts) with the same result as a per-token
 *   pass. A guard (a negated or `below` SAE test) does not make a rule
 *   evaluate: `all(A, not B)` can start to hold as B's window empties, but
 *   is only seen on A's next active token.
 * - **Families.** A `family` test's members are indexed like latents, each
 *   with its decoder cosine as a weight: an active member pushes
 *   `activation × cosine`, the members of one token are combined (sum or
 *   max, `family_pool.ts`) before the pooling, and any active member
 *   triggers the rule.
 * - **A firing** is one rule in one batch: the positions where the condition
 *   held (from the first one not suppressed on), the pooled value of each of
 *   the rule's conditions (leaf tests, `CompiledRule.conditions`) at the
 *   first of them, and the condition that completed the rule there, whose
 *   value and signal the firing leads with (`value`, `signal`, `{value}`).
 * - **The condition that completed the rule** (completion.ts): among the
 *   leaves that support the condition holding (outside `not`, through `all`
 *   and the `any` branches that hold) and can trigger it, the one that did
 *   not hold at the rule's previous evaluation in this request (a bitmask
 *   per rule and request, updated at every evaluation, for rules of 2..31
 *   leaves); if several rose together (or none did), the one whose signal
 *   is present on the token, then the shortest window, then file order.
 * - **Exceptions** (tenant, model, metadata; every key given must match)
 *   stop a firing, counted as `excepted`.
 * - **Suppression** per dedup key (rendered from the firing's fields at its
 *   first holding position; `{request_id}` by default): `request` fires once
 *   per key per request; `tokens n` stays quiet for the n tokens after a
 *   firing's first position; `seconds s` stays quiet for s seconds for the
 *   key across all requests; `none` fires on every batch where the rule
 *   holds. A suppressed firing is counted as `suppressed`.
 * - **Rate limit** per rule across requests: a token bucket of `alerts`
 *   tokens refilled at `alerts / seconds` per second; an empty bucket drops
 *   the firing, counted as `rateLimited` (suppression is then not started).
 * - **Bounded memory** (request_states.ts). State exists only for requests
 *   seen, and goes at {@linkcode PolicyEngine.endRequest} (counted
 *   `ended`), after `ttlMs` without a frame ({@linkcode PolicyEngine.sweep},
 *   counted `evicted.ttl`), or, past `maxRequests`, for the request seen
 *   least recently (counted `evicted.capacity`). Seconds-suppression keys
 *   are bounded the same way.
 * - **Hot reload.** {@linkcode PolicyEngine.swap} takes effect at the next
 *   evaluate; a rule whose id and compiled content are unchanged keeps its
 *   per-request state, suppression and rate-limit bucket; others start fresh.
 *
 * @module
 */
import { emptySpan, type LatentSpan, readRow, spanValue } from "../latent_rows.ts";
import { NO_LATENTS } from "../sae.ts";
import type { CompiledPolicySet } from "./compiled.ts";
import { INDEX_EMPTY, INDEX_HASH } from "./encoder_index.ts";
import { createTestPoolState } from "./family_pool.ts";
import { heldMask } from "./completion.ts";
import { CompletionCall } from "./completion_call.ts";
import {
  type EngineStats,
  type Firing,
  type Held,
  type PolicyEngineOptions,
  type RuleState,
  type TokenBatch,
} from "./engine_types.ts";
import { FiringGate } from "./firing_gate.ts";
import { RequestStates } from "./request_states.ts";
import { phaseMask, RuleEnv, RuleTables } from "./rule_tables.ts";
import { PART_ALL, type RulePart } from "./verdict_rules.ts";

export {
  type EngineStats,
  type Firing,
  PolicyEngineOptionError,
  type PolicyEngineOptions,
  type RequestContext,
  type TokenBatch,
} from "./engine_types.ts";

/** The index's constants as plain locals of this module (no import cell in the hot loop). */
const INDEX_EMPTY_LOCAL: number = INDEX_EMPTY;
const INDEX_HASH_LOCAL: number = INDEX_HASH;

/**
 * Runs a compiled policy set over the frames of many requests.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compile.ts";
 * import type { SparseLatents } from "../sae.ts";
 * declare const set: CompiledPolicySet, rows: SparseLatents[];
 * const engine = new PolicyEngine(set, { ttlMs: 60_000 });
 * for (const f of engine.evaluate({
 *   ctx: { requestId: "r1", model: "gpt2", phase: "prefill" },
 *   position: 0, tokens: rows.length, latents: new Map([["res", rows]]), firstRow: 0,
 * })) console.log(f.rule.id, f.positions, f.value);
 * engine.endRequest("r1");
 * ```
 */
export class PolicyEngine {
  #set: CompiledPolicySet;
  #pending: CompiledPolicySet | null = null;
  readonly #now: () => number;
  /** Each request's state, bounded by count and idle time (request_states.ts). */
  readonly #requests: RequestStates;
  /** Exceptions, suppression and rate limits, with their keys and buckets across requests. */
  readonly #gate: FiringGate;
  #tables: RuleTables;
  #stamp = 0;
  #call = 0;
  /** The token row being read (a span of its encoder's table), reused for every token. */
  readonly #span: LatentSpan = emptySpan();
  readonly #env = new RuleEnv();
  /** Asks which condition completed a rule, through one site (completion_call.ts). */
  readonly #completion = new CompletionCall(this.#env, this.#span);

  constructor(set: CompiledPolicySet, opts: PolicyEngineOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#requests = new RequestStates({
      maxRequests: opts.maxRequests ?? 100_000,
      ttlMs: opts.ttlMs ?? 600_000,
      now: this.#now,
    });
    this.#gate = new FiringGate({ maxKeys: this.#requests.maxRequests, now: this.#now });
    this.#set = set;
    this.#tables = new RuleTables(set);
  }

  /** At most this many requests have state (the least recently seen is evicted past it). */
  get maxRequests(): number {
    return this.#requests.maxRequests;
  }

  /** The set in force (a swapped-in set once an evaluate has adopted it). */
  get set(): CompiledPolicySet {
    return this.#set;
  }

  /** Counters; `activeRequests` is the number of requests with state now. */
  get stats(): EngineStats {
    return this.#requests.stats(this.#gate.counts);
  }

  /**
   * Replace the policy set. The new set takes over at the next
   * {@linkcode evaluate}; per-request state, suppression and rate limits are
   * kept for rules with the same hash (same id, same compiled content).
   *
   * @example
   * ```ts
   * import { compilePolicySet, type SignalInfo } from "./compile.ts";
   * import type { PolicyFileDef } from "./ast.ts";
   * declare const engine: PolicyEngine, files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
   * engine.swap(compilePolicySet(files, signals)); // throws before swapping if invalid
   * ```
   */
  swap(set: CompiledPolicySet): void {
    this.#pending = set;
  }

  #adopt(): void {
    const next = this.#pending!;
    this.#pending = null;
    const byHash = new Map(next.rules.map((r) => [r.hash, r.index]));
    const remap = this.#set.rules.map((r) => byHash.get(r.hash) ?? -1);
    this.#requests.remap(remap);
    this.#gate.retain(byHash);
    this.#set = next;
    this.#tables = new RuleTables(next);
    this.#stamp = 0;
    this.#call = 0;
  }

  /**
   * Evaluate one frame's tokens; returns at most one {@linkcode Firing} per
   * rule, in rule order. With `part` only the rules of that part run
   * (verdict_rules.ts): a frame evaluated for {@linkcode PART_VERDICT} and
   * then for `PART_REST` gets the firings one call for every rule gives it
   * (each rule's state is its own), the two lists being its parts.
   * `batch.latents` then needs only the signals that part reads.
   *
   * @example
   * ```ts
   * import type { SparseLatents } from "../sae.ts";
   * declare const engine: PolicyEngine, rowA: SparseLatents, rowB: SparseLatents;
   * const firings = engine.evaluate({ ctx: { requestId: "r1", model: "m" }, position: 0,
   *   tokens: 2, latents: new Map([["res", [rowA, rowB]]]), firstRow: 0 });
   * ```
   */
  evaluate(batch: TokenBatch, part: RulePart = PART_ALL): Firing[] {
    if (this.#pending) this.#adopt();
    const req = this.#requests.use(batch.ctx.requestId);
    const mask = phaseMask(batch.ctx.phase);
    for (let s = 0; s < 3; s++) {
      if (mask & (1 << s) && Number.isNaN(req.start[s])) req.start[s] = batch.position;
    }
    const tables = this.#tables;
    if (batch.tokens <= 0 || tables.rulesIn[part] === 0) return [];
    if (this.#stamp > 0x3fffffff - batch.tokens) {
      // marks are int32: restart the stamps before they wrap
      tables.mark.fill(0);
      this.#stamp = 0;
    }
    if (this.#call === 0x3fffffff) {
      tables.stateCall.fill(0);
      this.#call = 0;
    }
    const call = ++this.#call;
    const { stateOf, stateCall, cached, mark, scopeBit, scopeSlot, part: partOf } = tables;
    const { candidates, quickOp, quickThreshold } = tables;
    let cachedCount = 0;
    const rules = this.#set.rules;
    const env = this.#env;
    let count = 0;
    let held: Map<number, Held> | null = null;

    const span = this.#span;
    let t = 0;
    let stamp = 0;
    // one closure per batch, not per token: it reads the token's t and stamp
    const visit = (r: number, test: number, v: number) => {
      if (!(scopeBit[r] & mask) || !(partOf[r] & part)) return;
      const rule = rules[r];
      let rs: RuleState | undefined;
      if (stateCall[r] === call) rs = stateOf[r]!;
      else {
        rs = req.rules.get(r);
        if (rs === undefined) {
          req.rules.set(r, rs = { tests: new Array(rule.tests.length), held: 0 });
        }
        stateOf[r] = rs;
        stateCall[r] = call;
        cached[cachedCount++] = r;
      }
      let ps = rs.tests[test];
      if (ps === undefined) ps = rs.tests[test] = createTestPoolState(rule.tests[test]);
      ps.push(t, v, req.start[scopeSlot[r]]);
      const q = quickOp[r];
      if (q !== 0 && !(q === 1 ? v > quickThreshold[r] : v < quickThreshold[r])) return;
      if (rule.tests[test].trigger && mark[r] !== stamp) {
        mark[r] = stamp;
        candidates[count++] = r;
      }
    };
    for (let i = 0; i < batch.tokens; i++) {
      t = batch.position + i;
      stamp = ++this.#stamp;
      for (const [encoder, idx] of tables.encoders) {
        if (!readRow(batch.latents.get(encoder), batch.firstRow + i, span)) continue;
        const { groups, rule, test, weight } = idx;
        if (idx.kind === "probe") {
          const watched = idx.watched;
          for (let g = 0; g < watched.length; g++) {
            const v = spanValue(span, watched[g]);
            for (let e = groups[g]; e < groups[g + 1]; e++) visit(rule[e], test[e], v);
          }
          continue;
        }
        const { indices, values, from, to } = span;
        const offsets = idx.offsets;
        if (offsets !== null) {
          const end = offsets.length - 1;
          for (let k = from; k < to; k++) {
            const latent = indices[k];
            // most active latents are watched by no rule: this is the whole cost for them
            if (latent >= end) continue;
            const a = offsets[latent];
            const b = offsets[latent + 1];
            if (a === b) continue;
            for (let e = a; e < b; e++) visit(rule[e], test[e], values[k] * weight[e]);
          }
          continue;
        }
        const { slotKey, slotGroup, mask, shift, filter, filterMask } = idx;
        const EMPTY = INDEX_EMPTY_LOCAL;
        const HASH = INDEX_HASH_LOCAL;
        for (let k = from; k < to; k++) {
          const latent = indices[k] | 0; // int32, like the table's keys
          // most active latents are watched by no rule: the filter is the
          // whole cost for nearly all of them (see EncoderIndex)
          if (filter[latent & filterMask] === 0) continue;
          let s = (Math.imul(latent, HASH) >> shift) & mask;
          let key = slotKey[s];
          while (key !== latent) {
            if (key === EMPTY) break;
            s = (s + 1) & mask;
            key = slotKey[s];
          }
          if (key !== latent) continue;
          const g = slotGroup[s];
          for (let e = groups[g]; e < groups[g + 1]; e++) {
            visit(rule[e], test[e], values[k] * weight[e]);
          }
        }
      }
      if (count === 0) continue;
      // in the order their latents came: each rule's state is its own, and the firings are
      // put in rule order at the end
      for (let c = 0; c < count; c++) {
        const r = candidates[c];
        const rule = rules[r];
        env.rs = stateOf[r]!; // a candidate was visited in this call
        env.rule = rule;
        env.t = t;
        env.start = req.start[scopeSlot[r]];
        env.witness = -1;
        const holds = rule.holds(env);
        const leaves = tables.leaves[r];
        let before = -1;
        if (leaves.tracked) {
          before = env.rs.held;
          env.rs.held = heldMask(leaves, env);
        }
        if (!holds) continue;
        held ??= new Map();
        let h: Held | undefined = held.get(r);
        if (!h) held.set(r, h = { positions: [], values: [], witnesses: [] });
        h.positions.push(t);
        h.witnesses.push(
          leaves.n === 1
            ? (h.values.push(env.read(leaves.test[0])), 0)
            : this.#completion.complete(tables, r, batch, i, before, h),
        );
      }
      count = 0;
    }
    // the table must not keep this request's states alive, nor the span this batch's arrays,
    // once the engine is idle
    for (let c = 0; c < cachedCount; c++) stateOf[cached[c]] = undefined;
    span.indices = NO_LATENTS.indices;
    span.values = NO_LATENTS.values;
    if (held === null) return [];
    const out: Firing[] = [];
    for (const [r, h] of [...held].sort((a, b) => a[0] - b[0])) {
      const f = this.#gate.fire(rules[r], req.rules.get(r)!, batch, h);
      if (f) out.push(f);
    }
    return out;
  }

  /**
   * Drop the state of request `id` (its last frame was seen). Returns whether it had any.
   *
   * @example
   * ```ts
   * declare const engine: PolicyEngine;
   * engine.endRequest("r1");
   * ```
   */
  endRequest(id: string): boolean {
    return this.#requests.end(id);
  }

  /**
   * Evict the state of requests that sent nothing for `ttlMs`, and expired
   * seconds-suppression keys. Returns the number of requests evicted.
   *
   * @example
   * ```ts
   * declare const engine: PolicyEngine;
   * setInterval(() => engine.sweep(), 10_000);
   * ```
   */
  sweep(): number {
    const now = this.#now();
    const n = this.#requests.sweep(now);
    this.#gate.sweep(now);
    return n;
  }
}
