/**
 * What the policy engine computes once per policy set so that a hit reads
 * arrays, not objects: each rule's scope, its quick test, its conditions as
 * flat tables, and the scratch a batch reuses (candidate marks, the rule
 * states cached for a call, completion's buffers). Built at install and at
 * every swap; read per token by engine.ts.
 *
 * @module
 */
import { type LatentSpan, readRow, spanValue } from "../latent_rows.ts";
import type { CompiledPolicySet, CompiledRule, ConditionEnv } from "./compiled.ts";
import type { RequestContext, RuleState, TokenBatch } from "./engine_types.ts";
import { createTestPoolState } from "./family_pool.ts";
import { completingLeaf, type LeafTable, leafTable } from "./completion.ts";
import { rulePart, ruleParts } from "./verdict_rules.ts";

/**
 * Where {@linkcode RuleTables.completion} reads: the batch's row `i`, the
 * rule's held mask at its previous evaluation (`before`), a reusable row
 * (`span`), and the list each condition's value is appended to (`values`).
 * The engine keeps one and sets it per call: no object per token that holds.
 */
export interface CompletionSite {
  batch: TokenBatch;
  i: number;
  before: number;
  span: LatentSpan;
  values: number[];
}

const SCOPE_BIT = { prompt: 1, generation: 2, both: 4 } as const;
const SCOPE_SLOT = { prompt: 0, generation: 1, both: 2 } as const;

/**
 * The scope bits (SCOPE_BIT) a frame of `phase` counts for: a frame without
 * a phase counts for every scope.
 *
 * @example
 * ```ts
 * phaseMask("prefill"); // 5: prompt and both
 * ```
 */
export function phaseMask(phase: RequestContext["phase"]): number {
  return phase === "prefill" ? 1 | 4 : phase === "decode" ? 2 | 4 : 7;
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

/**
 * Reads pooled values for the rule being evaluated at the current token.
 *
 * @example
 * ```ts
 * import type { CompiledRule } from "./compiled.ts";
 * import type { RuleState } from "./engine_types.ts";
 * declare const rule: CompiledRule, state: RuleState;
 * const env = new RuleEnv();
 * env.rule = rule;
 * env.rs = state;
 * env.t = 7;
 * console.log(rule.holds(env));
 * ```
 */
export class RuleEnv implements ConditionEnv {
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
 * Per-rule tables of one policy set, and the engine's scratch sized to it.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "./compiled.ts";
 * declare const set: CompiledPolicySet;
 * const tables = new RuleTables(set);
 * console.log(tables.quickOp.length === set.rules.length);
 * ```
 */
export class RuleTables {
  /** Per rule: the stamp of the token it was last made a candidate at. */
  readonly mark: Int32Array;
  /**
   * The current token's candidate rules (each once: `mark`), kept here rather than in an array
   * per call: an emptied array gives its storage back, and regrowing it for every token was the
   * largest allocation of a watched `serve` (about 20 MB/s at half load).
   */
  readonly candidates: Int32Array;
  /**
   * Per rule whose condition is one test of a token-pooled signal: 1 (above) or 2 (below) and
   * its threshold; 0 for every other rule. Such a rule holds at a token only on the value pushed
   * there, so a value that fails the test does not make it a candidate (most hits of a watched
   * latent are below its rule's threshold: checking each as a candidate was half the evaluation).
   */
  readonly quickOp: Uint8Array;
  readonly quickThreshold: Float64Array;
  /**
   * Per rule: its state in the request being evaluated, valid where `stateCall[r]` is the
   * engine's call number. A hit then reads two arrays instead of the request's map (a frame of 16
   * tokens on 64 watched latents is up to 1,024 hits on the same 64 rules). Emptied at the end of
   * a call that returns; one that throws leaves at most one state per rule here (never read
   * again: the next call has a new number) until that rule's next hit or the next set.
   */
  readonly stateOf: (RuleState | undefined)[];
  readonly stateCall: Int32Array;
  /** The rules whose state a call cached (`stateOf` is emptied of them at its end). */
  readonly cached: Int32Array;
  /** Per rule: its scope's bit (SCOPE_BIT) and start slot (SCOPE_SLOT), read per hit. */
  readonly scopeBit: Uint8Array;
  readonly scopeSlot: Uint8Array;
  /** Per rule: its part (verdict_rules.ts), which an evaluation of one part checks per hit. */
  readonly part: Uint8Array;
  /** Rules an evaluation of each part runs, indexed by the part (PART_VERDICT, PART_REST, PART_ALL). */
  readonly rulesIn: readonly number[];
  /** Per rule: its conditions as flat arrays (completion.ts). */
  readonly leaves: LeafTable[];
  /** Per encoder in the set: [id, index] (an array is cheaper to walk per token than a Map). */
  readonly encoders: [
    string,
    CompiledPolicySet["index"] extends ReadonlyMap<string, infer V> ? V : never,
  ][];
  /** Scratch for completion: per condition, pooled value, presence, support mark. */
  readonly #leafValues: Float64Array;
  readonly #leafPresent: Uint8Array;
  readonly #leafScratch: Uint8Array;

  constructor(set: CompiledPolicySet) {
    const n = set.rules.length;
    this.mark = new Int32Array(n);
    this.candidates = new Int32Array(n);
    this.stateOf = new Array(n).fill(undefined);
    this.stateCall = new Int32Array(n);
    this.cached = new Int32Array(n);
    this.quickOp = Uint8Array.from(set.rules, quickTestOp);
    this.quickThreshold = Float64Array.from(
      set.rules,
      (r) => r.condition.kind === "test" ? r.condition.threshold : 0,
    );
    this.scopeBit = Uint8Array.from(set.rules, (r) => SCOPE_BIT[r.scope]);
    this.scopeSlot = Uint8Array.from(set.rules, (r) => SCOPE_SLOT[r.scope]);
    this.part = Uint8Array.from(set.rules, rulePart);
    const { verdict, rest } = ruleParts(set);
    this.rulesIn = [0, verdict, rest, verdict + rest];
    this.encoders = [...set.index];
    this.leaves = set.rules.map(leafTable);
    const most = Math.max(1, ...this.leaves.map((l) => l.n));
    this.#leafValues = new Float64Array(most);
    this.#leafPresent = new Uint8Array(most);
    this.#leafScratch = new Uint8Array(most);
  }

  /**
   * The condition that completed rule `r` at the env's token (row `at.i` of
   * `at.batch`); appends each condition's value to `at.values`.
   */
  completion(r: number, env: RuleEnv, at: CompletionSite): number {
    const rule = env.rule;
    const leaves = this.leaves[r];
    const values = this.#leafValues;
    const present = this.#leafPresent;
    const { batch, span } = at;
    for (let k = 0; k < leaves.n; k++) {
      values[k] = env.read(leaves.test[k]);
      at.values.push(values[k]);
      const test = rule.tests[leaves.test[k]];
      present[k] = leaves.probe[k] === 1 ||
          (readRow(batch.latents.get(test.encoder), batch.firstRow + at.i, span) &&
            spanValue(span, test.index) !== 0)
        ? 1
        : 0;
    }
    return completingLeaf(rule, leaves, {
      values,
      before: at.before,
      present,
      scratch: this.#leafScratch,
    });
  }
}
