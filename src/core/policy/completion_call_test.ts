import assert from "node:assert/strict";
import { emptySpan, type LatentTable } from "../latent_rows.ts";
import { compilePolicySet } from "./compile.ts";
import { CompletionCall } from "./completion_call.ts";
import type { Held, TokenBatch } from "./engine_types.ts";
import { createTestPoolState } from "./family_pool.ts";
import { RuleEnv, RuleTables } from "./rule_tables.ts";
import { all, file, latent, rule, SIGNALS, sparse, test } from "./test_helpers.ts";

/** `all(res:1 above 5, res:2 above 3)`, both pooled per token, at token 0 where res:1 is 6 and res:2 is 4. */
function setUp() {
  const set = compilePolicySet(
    [file([rule("r", all(test(latent(1), 5), test(latent(2), 3)))])],
    SIGNALS,
  );
  const r = set.rules[0];
  const env = new RuleEnv();
  env.rule = r;
  env.rs = { tests: [], held: 0 };
  env.t = 0;
  env.start = 0;
  for (const [k, value] of [[1, 6], [2, 4]]) {
    const i = r.tests.findIndex((t) => t.index === k);
    const ps = env.rs.tests[i] = createTestPoolState(r.tests[i]);
    ps.push(0, value, 0);
  }
  const batch: TokenBatch = {
    ctx: { requestId: "r1", model: "m" },
    position: 0,
    tokens: 1,
    latents: new Map([["res", [sparse([[1, 6], [2, 4]])]]]),
    firstRow: 0,
  };
  return { tables: new RuleTables(set), env, batch };
}

const held = (): Held => ({ positions: [], values: [], witnesses: [] });

Deno.test("completion call: the condition that rose completes the rule; each call appends both values", () => {
  const { tables, env, batch } = setUp();
  const call = new CompletionCall(env, emptySpan());
  const h = held();
  assert.equal(call.complete(tables, 0, batch, 0, 0b01, h), 1); // res:2 rose
  assert.deepEqual(h.values, [6, 4]);
  assert.equal(call.complete(tables, 0, batch, 0, 0b10, h), 0); // res:1 rose
  assert.deepEqual(h.values, [6, 4, 6, 4]);
  // untracked, both present, same window: the first in file order
  assert.equal(call.complete(tables, 0, batch, 0, -1, h), 0);
  assert.deepEqual(h.values, [6, 4, 6, 4, 6, 4]);
  assert.equal(call.holdsBatch, false, "the batch and the list are let go after the call");
});

Deno.test("completion call: a call that throws leaves the call usable, with the next list", () => {
  const { tables, env, batch } = setUp();
  const call = new CompletionCall(env, emptySpan());
  const broken: TokenBatch = {
    ...batch,
    latents: {
      get(): LatentTable {
        throw new Error("no rows");
      },
    } as unknown as ReadonlyMap<string, LatentTable>,
  };
  const first = held();
  assert.throws(() => call.complete(tables, 0, broken, 0, 0b01, first), /no rows/);
  assert.equal(call.holdsBatch, false, "a call that threw let go of its batch too");
  assert.deepEqual(first.values, [6]); // the first value went in before the row was read
  const next = held();
  assert.equal(call.complete(tables, 0, batch, 0, 0b01, next), 1);
  assert.deepEqual(next.values, [6, 4]);
  assert.deepEqual(first.values, [6]); // the earlier list is no longer written to
  assert.equal(call.holdsBatch, false);
});
