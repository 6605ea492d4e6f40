import assert from "node:assert/strict";
import type { RuleDef, Throttle } from "./ast.ts";
import { compilePolicySet } from "./compile.ts";
import type { CompiledRule } from "./compiled.ts";
import type { Held, RuleState, TokenBatch } from "./engine_types.ts";
import { firingFields, FiringGate, isExcepted } from "./firing_gate.ts";
import { at, file, latent, rule, SIGNALS, test } from "./test_helpers.ts";

function compiled(def: RuleDef): CompiledRule {
  return compilePolicySet([file([def])], SIGNALS).rules[0];
}

function throttled(throttle: Throttle, over: Partial<RuleDef> = {}): CompiledRule {
  return compiled(rule("g", test(latent(1), 0), { throttle, ...over }));
}

const state = (): RuleState => ({ tests: [], held: 0 });

function batchOf(requestId: string, position = 0, extra: Partial<TokenBatch> = {}): TokenBatch {
  return {
    ctx: { requestId, model: "m", tenant: "t" },
    position,
    tokens: 4,
    latents: new Map(),
    firstRow: 0,
    ...extra,
  };
}

/** Held at `positions`, the one condition's value at position p being p / 10. */
const heldAt = (...positions: number[]): Held => ({
  positions,
  values: positions.map((p) => p / 10),
  witnesses: positions.map(() => 0),
});

Deno.test("firing gate: tokens suppression lets the firing through from the first position past n", () => {
  const gate = new FiringGate({ maxKeys: 10, now: () => 0 });
  const r = throttled({ suppress: { kind: "tokens", n: 2 }, dedupKey: "{request_id}" });
  const rs = state();
  assert.deepEqual(gate.fire(r, rs, batchOf("q"), heldAt(5))?.positions, [5]);
  // 6 and 7 are within 2 tokens of 5: the firing starts at 8, with 8's value
  const f = gate.fire(r, rs, batchOf("q", 6), heldAt(6, 7, 8, 9));
  assert.deepEqual(f?.positions, [8, 9]);
  assert.equal(f?.value, 0.8);
  assert.deepEqual(f?.conditionValues, [0.8]);
  assert.equal(rs.fired?.get("q"), 8, "the key's last firing moved to 8");
  assert.equal(gate.fire(r, rs, batchOf("q", 10), heldAt(10)), null);
  assert.equal(gate.counts.suppressed, 1);
});

Deno.test("firing gate: seconds-suppression keys are bounded, the oldest forgotten first", () => {
  const gate = new FiringGate({ maxKeys: 2, now: () => 0 });
  const r = throttled({ suppress: { kind: "seconds", s: 60 }, dedupKey: "{request_id}" });
  const fires = (id: string) => gate.fire(r, state(), batchOf(id), heldAt(0)) !== null;
  assert.deepEqual([fires("a"), fires("b"), fires("a")], [true, true, false]);
  assert.equal(fires("c"), true, "a third key: a's, the oldest, goes");
  assert.deepEqual([fires("b"), fires("a")], [false, true]);
  assert.equal(gate.counts.suppressed, 2);
});

Deno.test("firing gate: sweep forgets only quiet keys whose time is up; retain drops other rules' keys", () => {
  let now = 0;
  const gate = new FiringGate({ maxKeys: 2, now: () => now });
  const long = throttled({ suppress: { kind: "seconds", s: 10 }, dedupKey: "{request_id}" });
  const short = compiled(
    rule("s", test(latent(1), 0), {
      throttle: { suppress: { kind: "seconds", s: 1 }, dedupKey: "{request_id}" },
    }),
  );
  const fires = (r: CompiledRule, id: string) =>
    gate.fire(r, state(), batchOf(id), heldAt(0)) !== null;
  assert.equal(fires(long, "x"), true); // quiet until 10,000
  assert.equal(fires(short, "y"), true); // quiet until 1,000
  now = 1_000;
  gate.sweep(now);
  // y went at the sweep, so z's key makes two and evicts nothing: x stays quiet (without the
  // sweep, z's would be a third key and x's, the oldest, would go)
  assert.equal(fires(short, "z"), true);
  assert.equal(fires(long, "x"), false);
  gate.retain(new Set([short.hash]));
  assert.equal(fires(long, "x"), true, "x's key went with its rule");
  assert.equal(fires(short, "z"), false, "z's stayed with its rule");
});

Deno.test("firing gate: a rate limit refills by the clock and is counted apart from suppression", () => {
  let now = 0;
  const gate = new FiringGate({ maxKeys: 10, now: () => now });
  const r = throttled({
    suppress: { kind: "none" },
    dedupKey: "{request_id}",
    rateLimit: { alerts: 1, seconds: 2 },
  });
  const fires = () => gate.fire(r, state(), batchOf("x"), heldAt(0)) !== null;
  assert.deepEqual([fires(), fires()], [true, false]);
  now = 1_999;
  assert.equal(fires(), false);
  now = 4_000; // refilled from 1,999 on: 1.0005 tokens
  assert.equal(fires(), true);
  assert.deepEqual(gate.counts, { suppressed: 0, rateLimited: 2, excepted: 0 });
});

Deno.test("firing gate: exceptions need every key they give to match", () => {
  const r = compiled(
    rule("e", test(latent(1), 0), {
      exceptions: [{ tenant: ["t"], model: ["other"], source: at(5) }, {
        metadata: { env: ["dev"] },
        source: at(6),
      }],
    }),
  );
  assert.equal(isExcepted(r, { requestId: "a", model: "m", tenant: "t" }), false);
  assert.equal(isExcepted(r, { requestId: "a", model: "other", tenant: "t" }), true);
  assert.equal(isExcepted(r, { requestId: "a", model: "m", meta: { env: "dev" } }), true);
  assert.equal(isExcepted(r, { requestId: "a", model: "m", meta: { env: "prod" } }), false);
  const gate = new FiringGate({ maxKeys: 10, now: () => 0 });
  const b = batchOf("a");
  b.ctx.model = "other";
  assert.equal(gate.fire(r, state(), b, heldAt(0)), null);
  assert.equal(gate.counts.excepted, 1);
});

Deno.test("firing gate: fields name the span from the first position let through, with its text", () => {
  const r = throttled({ suppress: { kind: "none" }, dedupKey: "{tenant}:{tokens}" }, {
    description: "{rule} at {tokens}: {text} ({value})",
  });
  const b = batchOf("q", 4, { tokenText: ["Ignore", " all", " previous", " orders"] });
  const fields = firingFields(r, b, heldAt(5, 6, 7), 1);
  assert.equal(fields.tokens, "6-7");
  assert.equal(fields.text, " previous orders");
  assert.equal(fields.value, 0.6);
  assert.equal(fields.signal, "res:1");
  const f = new FiringGate({ maxKeys: 10, now: () => 0 }).fire(r, state(), b, heldAt(5, 6, 7));
  assert.equal(f?.dedupKey, "t:5-7", "the key is rendered at the first position");
  assert.equal(f?.description, "g at 5-7:  all previous orders (0.5)");
});
