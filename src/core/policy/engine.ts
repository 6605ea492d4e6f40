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
 * - **Bounded memory.** State exists only for requests seen, and goes at
 *   {@linkcode PolicyEngine.endRequest} (counted `ended`), after `ttlMs`
 *   without a frame ({@linkcode PolicyEngine.sweep}, counted `evicted.ttl`),
 *   or, past `maxRequests`, for the request seen least recently (counted
 *   `evicted.capacity`). Seconds-suppression keys are bounded the same way.
 * - **Hot reload.** {@linkcode PolicyEngine.swap} takes effect at the next
 *   evaluate; a rule whose id and compiled content are unchanged keeps its
 *   per-request state, suppression and rate-limit bucket; others start fresh.
 *
 * @module
 */
import {
  emptySpan,
  type LatentSpan,
  type LatentTable,
  readRow,
  spanValue,
} from "../latent_rows.ts";
import { NO_LATENTS } from "../sae.ts";
import type { SteerAction } from "./ast.ts";
import type { CompiledPolicySet, CompiledRule, CompiledTest, ConditionEnv } from "./compiled.ts";
import { INDEX_EMPTY, INDEX_HASH } from "./encoder_index.ts";
import type { PoolState } from "./pool.ts";
import { createTestPoolState } from "./family_pool.ts";
import { renderTemplate, type TemplateFields } from "./template.ts";
import { completingLeaf, heldMask, type LeafTable, leafTable } from "./completion.ts";
import { conditionFields } from "./condition_fields.ts";
import { joinTokenText } from "../render/token_text.ts";
import { RecencyMap } from "../recency_map.ts";

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

/** The index's constants as plain locals of this module (no import cell in the hot loop). */
const INDEX_EMPTY_LOCAL: number = INDEX_EMPTY;
const INDEX_HASH_LOCAL: number = INDEX_HASH;

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
  /** Requests whose state went at {@linkcode PolicyEngine.endRequest}. */
  ended: number;
  suppressed: number;
  rateLimited: number;
  excepted: number;
}

/** Options of {@linkcode PolicyEngine}. */
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

interface RuleState {
  /** Per test of the rule, created when first touched. */
  tests: (PoolState | undefined)[];
  /** Dedup key → first position of the last firing (request and tokens suppression). */
  fired?: Map<string, number>;
  /** Bit k: condition k held at the rule's previous evaluation (rules of 2..31 conditions). */
  held: number;
}

interface RequestState {
  lastSeen: number;
  /** First position in scope: prompt, generation, both (NaN until seen). */
  start: [number, number, number];
  /** Rule index in the current set → state. */
  rules: Map<number, RuleState>;
}

/** What one rule held on in the current batch. */
interface Held {
  positions: number[];
  /** Per position, the pooled value of each condition (stride: the rule's condition count). */
  values: number[];
  /** Per position, the condition that completed the rule. */
  witnesses: number[];
}

/**
 * 1 (above) or 2 (below) for a rule whose whole condition is one test of a
 * token-pooled signal (one value per token, read back as pushed), else 0.
 */
function quickTestOp(rule: CompiledRule): number {
  const c = rule.condition;
  if (c.kind !== "test" || rule.tests.length !== 1) return 0;
  const test = rule.tests[c.test];
  if (test.pool.kind !== "token" || test.family !== undefined) return 0;
  return c.op === "above" ? 1 : 2;
}

const SCOPE_BIT = { prompt: 1, generation: 2, both: 4 } as const;
const SCOPE_SLOT = { prompt: 0, generation: 1, both: 2 } as const;

function phaseMask(phase: RequestContext["phase"]): number {
  return phase === "prefill" ? 1 | 4 : phase === "decode" ? 2 | 4 : 7;
}

/** Reads pooled values for the rule being evaluated at the current token. */
class Env implements ConditionEnv {
  rs!: RuleState;
  rule!: CompiledRule;
  t = 0;
  start = 0;
  witness = -1;
  witnessValue = 0;
  read(test: number): number {
    let s = this.rs.tests[test];
    if (s === undefined) s = this.rs.tests[test] = createTestPoolState(this.rule.tests[test]);
    return s.read(this.t, this.start);
  }
}

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
  readonly #max: number;
  readonly #ttl: number;
  readonly #now: () => number;
  /** Least recently seen first (a use moves an entry: no map table rebuilt per batch). */
  readonly #requests = new RecencyMap<string, RequestState>();
  /** `hash \0 key` → time (ms) the key stays quiet until (seconds suppression). */
  readonly #quiet = new Map<string, number>();
  /** Rule hash → token bucket. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #stats = {
    evicted: { ttl: 0, capacity: 0 },
    ended: 0,
    suppressed: 0,
    rateLimited: 0,
    excepted: 0,
  };
  #mark = new Int32Array(0);
  /**
   * The current token's candidate rules (each once: `#mark`), kept here rather than in an array
   * per call: an emptied array gives its storage back, and regrowing it for every token was the
   * largest allocation of a watched `serve` (about 20 MB/s at half load).
   */
  #candidates = new Int32Array(0);
  /**
   * Per rule whose condition is one test of a token-pooled signal: 1 (above) or 2 (below) and
   * its threshold; 0 for every other rule. Such a rule holds at a token only on the value pushed
   * there, so a value that fails the test does not make it a candidate (most hits of a watched
   * latent are below its rule's threshold: checking each as a candidate was half the evaluation).
   */
  #quickOp = new Uint8Array(0);
  #quickThreshold = new Float64Array(0);
  /**
   * Per rule: its state in the request being evaluated, valid where `#stateCall[r]` is this
   * call's number. A hit then reads two arrays instead of the request's map (a frame of 16 tokens
   * on 64 watched latents is up to 1,024 hits on the same 64 rules). Emptied at the end of a call
   * that returns; one that throws leaves at most one state per rule here (never read again: the
   * next call has a new number) until that rule's next hit or the next set.
   */
  #stateOf: (RuleState | undefined)[] = [];
  #stateCall = new Int32Array(0);
  #call = 0;
  /** The rules whose state this call cached (`#stateOf` is emptied of them at its end). */
  #cached = new Int32Array(0);
  /** Per rule: its scope's bit (SCOPE_BIT) and start slot (SCOPE_SLOT), read per hit. */
  #scopeBit = new Uint8Array(0);
  #scopeSlot = new Uint8Array(0);
  /** Per rule: its conditions as flat arrays (completion.ts). */
  #leaves: LeafTable[] = [];
  /** Scratch for completion: per condition, pooled value, presence, support mark. */
  #leafValues = new Float64Array(0);
  #leafPresent = new Uint8Array(0);
  #leafScratch = new Uint8Array(0);
  /** The token row being read (a span of its encoder's table), reused for every token. */
  readonly #span: LatentSpan = emptySpan();
  #stamp = 0;
  readonly #env = new Env();
  /** Per encoder in the set: [id, index] (an array is cheaper to walk per token than a Map). */
  #encoders: [
    string,
    CompiledPolicySet["index"] extends ReadonlyMap<string, infer V> ? V : never,
  ][] = [];

  constructor(set: CompiledPolicySet, opts: PolicyEngineOptions = {}) {
    this.#max = opts.maxRequests ?? 100_000;
    this.#ttl = opts.ttlMs ?? 600_000;
    this.#now = opts.now ?? Date.now;
    if (!Number.isInteger(this.#max) || this.#max < 1) {
      throw new PolicyEngineOptionError(`maxRequests: expected an integer ≥ 1, found ${this.#max}`);
    }
    if (!(this.#ttl > 0)) {
      throw new PolicyEngineOptionError(`ttlMs: expected a duration > 0, found ${this.#ttl}`);
    }
    this.#set = set;
    this.#install(set);
  }

  /** The set in force (a swapped-in set once an evaluate has adopted it). */
  get set(): CompiledPolicySet {
    return this.#set;
  }

  /** Counters; `activeRequests` is the number of requests with state now. */
  get stats(): EngineStats {
    const s = this.#stats;
    return {
      activeRequests: this.#requests.size,
      evicted: { ...s.evicted },
      ended: s.ended,
      suppressed: s.suppressed,
      rateLimited: s.rateLimited,
      excepted: s.excepted,
    };
  }

  #install(set: CompiledPolicySet): void {
    this.#mark = new Int32Array(set.rules.length);
    this.#candidates = new Int32Array(set.rules.length);
    this.#stateOf = new Array(set.rules.length).fill(undefined);
    this.#stateCall = new Int32Array(set.rules.length);
    this.#cached = new Int32Array(set.rules.length);
    this.#call = 0;
    this.#quickOp = Uint8Array.from(set.rules, quickTestOp);
    this.#quickThreshold = Float64Array.from(
      set.rules,
      (r) => r.condition.kind === "test" ? r.condition.threshold : 0,
    );
    this.#scopeBit = Uint8Array.from(set.rules, (r) => SCOPE_BIT[r.scope]);
    this.#scopeSlot = Uint8Array.from(set.rules, (r) => SCOPE_SLOT[r.scope]);
    this.#stamp = 0;
    this.#encoders = [...set.index];
    this.#leaves = set.rules.map(leafTable);
    const most = Math.max(1, ...this.#leaves.map((l) => l.n));
    this.#leafValues = new Float64Array(most);
    this.#leafPresent = new Uint8Array(most);
    this.#leafScratch = new Uint8Array(most);
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
    for (const req of this.#requests.values()) {
      const rules = new Map<number, RuleState>();
      for (const [i, rs] of req.rules) {
        const j = remap[i];
        if (j >= 0) rules.set(j, rs);
      }
      req.rules = rules;
    }
    for (const key of this.#buckets.keys()) if (!byHash.has(key)) this.#buckets.delete(key);
    for (const key of this.#quiet.keys()) {
      if (!byHash.has(key.slice(0, key.indexOf("\u0000")))) this.#quiet.delete(key);
    }
    this.#set = next;
    this.#install(next);
  }

  #request(id: string): RequestState {
    // a use makes the request the most recently seen, so capacity evicts the stalest
    let req = this.#requests.use(id);
    if (!req) {
      if (this.#requests.size >= this.#max) {
        this.#requests.delete(this.#requests.oldest()!);
        this.#stats.evicted.capacity++;
      }
      req = { lastSeen: 0, start: [NaN, NaN, NaN], rules: new Map() };
      this.#requests.set(id, req);
    }
    req.lastSeen = this.#now();
    return req;
  }

  /**
   * Evaluate one frame's tokens; returns at most one {@linkcode Firing} per
   * rule, in rule order.
   *
   * @example
   * ```ts
   * import type { SparseLatents } from "../sae.ts";
   * declare const engine: PolicyEngine, rowA: SparseLatents, rowB: SparseLatents;
   * const firings = engine.evaluate({ ctx: { requestId: "r1", model: "m" }, position: 0,
   *   tokens: 2, latents: new Map([["res", [rowA, rowB]]]), firstRow: 0 });
   * ```
   */
  evaluate(batch: TokenBatch): Firing[] {
    if (this.#pending) this.#adopt();
    const req = this.#request(batch.ctx.requestId);
    const mask = phaseMask(batch.ctx.phase);
    for (let s = 0; s < 3; s++) {
      if (mask & (1 << s) && Number.isNaN(req.start[s])) req.start[s] = batch.position;
    }
    if (batch.tokens <= 0 || this.#set.rules.length === 0) return [];
    if (this.#stamp > 0x3fffffff - batch.tokens) {
      // marks are int32: restart the stamps before they wrap
      this.#mark.fill(0);
      this.#stamp = 0;
    }
    if (this.#call === 0x3fffffff) {
      this.#stateCall.fill(0);
      this.#call = 0;
    }
    const call = ++this.#call;
    const stateOf = this.#stateOf;
    const stateCall = this.#stateCall;
    const cached = this.#cached;
    let cachedCount = 0;
    const rules = this.#set.rules;
    const mark = this.#mark;
    const scopeBit = this.#scopeBit;
    const scopeSlot = this.#scopeSlot;
    const env = this.#env;
    const candidates = this.#candidates;
    const quickOp = this.#quickOp;
    const quickThreshold = this.#quickThreshold;
    let count = 0;
    let held: Map<number, Held> | null = null;

    const span = this.#span;
    let t = 0;
    let stamp = 0;
    // one closure per batch, not per token: it reads the token's t and stamp
    const visit = (r: number, test: number, v: number) => {
      if (!(scopeBit[r] & mask)) return;
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
      for (const [encoder, idx] of this.#encoders) {
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
        const leaves = this.#leaves[r];
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
            : this.#completion(rule, leaves, env, batch, i, before, h),
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
      const f = this.#fire(rules[r], req, batch, h);
      if (f) out.push(f);
    }
    return out;
  }

  /** The condition that completed `rule` at the env's token; records each condition's value in `h`. */
  #completion(
    rule: CompiledRule,
    leaves: LeafTable,
    env: Env,
    batch: TokenBatch,
    i: number,
    before: number,
    h: Held,
  ): number {
    const values = this.#leafValues;
    const present = this.#leafPresent;
    for (let k = 0; k < leaves.n; k++) {
      values[k] = env.read(leaves.test[k]);
      h.values.push(values[k]);
      const test = rule.tests[leaves.test[k]];
      const span = this.#span;
      present[k] = leaves.probe[k] === 1 ||
          (readRow(batch.latents.get(test.encoder), batch.firstRow + i, span) &&
            spanValue(span, test.index) !== 0)
        ? 1
        : 0;
    }
    return completingLeaf(rule, leaves, { values, before, present, scratch: this.#leafScratch });
  }

  #excepted(rule: CompiledRule, ctx: RequestContext): boolean {
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

  #fields(
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

  #fire(rule: CompiledRule, req: RequestState, batch: TokenBatch, h: Held): Firing | null {
    if (rule.exceptions.length > 0 && this.#excepted(rule, batch.ctx)) {
      this.#stats.excepted++;
      return null;
    }
    const { throttle } = rule.def;
    const key = throttle.dedupKey === "{request_id}"
      ? batch.ctx.requestId
      : renderTemplate(throttle.dedupKey, this.#fields(rule, batch, h, 0));
    const rs = req.rules.get(rule.index)!;
    let from = 0;
    const sup = throttle.suppress;
    const now = sup.kind === "seconds" || throttle.rateLimit ? this.#now() : 0;
    const quietKey = `${rule.hash}\u0000${key}`;
    if (sup.kind === "request" && rs.fired?.has(key)) from = -1;
    else if (sup.kind === "tokens") {
      const last = rs.fired?.get(key);
      if (last !== undefined) {
        from = h.positions.findIndex((p) => p > last + sup.n);
      }
    } else if (sup.kind === "seconds") {
      const until = this.#quiet.get(quietKey);
      if (until !== undefined && now < until) from = -1;
    }
    if (from < 0) {
      this.#stats.suppressed++;
      return null;
    }
    if (throttle.rateLimit) {
      const { alerts, seconds } = throttle.rateLimit;
      let b = this.#buckets.get(rule.hash);
      if (!b) this.#buckets.set(rule.hash, b = { tokens: alerts, at: now });
      b.tokens = Math.min(alerts, b.tokens + ((now - b.at) / 1000) * (alerts / seconds));
      b.at = now;
      if (b.tokens < 1) {
        this.#stats.rateLimited++;
        return null;
      }
      b.tokens -= 1;
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
    const completedBy = h.witnesses[from];
    const test = rule.tests[rule.conditions[completedBy].test];
    const n = rule.conditions.length;
    const conditionValues = h.values.slice(from * n, from * n + n);
    const fields = rule.def.description ? this.#fields(rule, batch, h, from) : undefined;
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
   * Drop the state of request `id` (its last frame was seen). Returns whether it had any.
   *
   * @example
   * ```ts
   * declare const engine: PolicyEngine;
   * engine.endRequest("r1");
   * ```
   */
  endRequest(id: string): boolean {
    const had = this.#requests.delete(id);
    if (had) this.#stats.ended++;
    return had;
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
    let n = 0;
    // least recently seen first: stop at the first request still live
    for (const [id, req] of this.#requests) {
      if (now - req.lastSeen <= this.#ttl) break;
      this.#requests.delete(id);
      n++;
    }
    this.#stats.evicted.ttl += n;
    for (const [key, until] of this.#quiet) if (until <= now) this.#quiet.delete(key);
    return n;
  }
}
