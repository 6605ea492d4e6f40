/**
 * The engine's call of {@linkcode RuleTables.completion}: one
 * {@linkcode CompletionSite} per engine, filled for each token where a rule
 * of more than one condition holds and emptied after the call, so that an
 * idle engine keeps no batch alive (nor one whose evaluation threw). No
 * object is made per token that holds (engine.ts, "The condition that
 * completed the rule").
 *
 * @module
 */
import type { LatentSpan } from "../latent_rows.ts";
import type { Held, TokenBatch } from "./engine_types.ts";
import type { CompletionSite, RuleEnv, RuleTables } from "./rule_tables.ts";

/** An empty list the completion site holds between calls. */
const NO_VALUES = Object.freeze([]) as unknown as number[]; // frozen: a push to it throws

/**
 * Asks the rule tables which condition completed a rule, through the one
 * site it keeps.
 *
 * @example
 * ```ts
 * import { emptySpan } from "../latent_rows.ts";
 * import type { Held, TokenBatch } from "./engine_types.ts";
 * import { CompletionCall } from "./completion_call.ts";
 * import { RuleEnv, type RuleTables } from "./rule_tables.ts";
 * declare const tables: RuleTables, batch: TokenBatch, held: Held;
 * const env = new RuleEnv(); // set to the rule and token being evaluated
 * const call = new CompletionCall(env, emptySpan());
 * const witness = call.complete(tables, 0, batch, 0, -1, held); // pushes to held.values
 * ```
 */
export class CompletionCall {
  readonly #env: RuleEnv;
  /** Where completion reads, set per token that holds (one object, not one per call). */
  readonly #site: CompletionSite;

  /** `env` is the engine's, set to the rule and token; `span` is the row it reuses. */
  constructor(env: RuleEnv, span: LatentSpan) {
    this.#env = env;
    this.#site = {
      batch: undefined!,
      i: 0,
      before: 0,
      span,
      values: NO_VALUES,
    };
  }

  /** Whether the site still holds a batch (never between calls: the engine keeps no batch alive). */
  get holdsBatch(): boolean {
    return this.#site.batch !== undefined || this.#site.values !== NO_VALUES;
  }

  /**
   * The condition that completed rule `r` at row `i`; records each
   * condition's value in `h`. `before` is the rule's held mask at its
   * previous evaluation (-1 untracked). Positional, not an options object:
   * it runs per token that holds, and allocates nothing.
   */
  complete(
    tables: RuleTables,
    r: number,
    batch: TokenBatch,
    i: number,
    before: number,
    h: Held,
  ): number {
    const site = this.#site;
    site.batch = batch;
    site.i = i;
    site.before = before;
    site.values = h.values;
    try {
      return tables.completion(r, this.#env, site);
    } finally {
      // the site must not keep this batch alive once the engine is idle, nor after a throw
      site.batch = undefined!;
      site.values = NO_VALUES;
    }
  }
}
