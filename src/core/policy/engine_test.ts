import assert from "node:assert/strict";
import type { Condition, Pool, RuleDef, Scope, Throttle } from "./ast.ts";
import {
  type CompiledCondition,
  type CompiledPolicySet,
  compilePolicySet,
  type SignalInfo,
} from "./compile.ts";
import { type Firing, PolicyEngine, PolicyEngineOptionError, type TokenBatch } from "./engine.ts";
import type { SparseLatents } from "../sae.ts";
import { LatentRows, rowOf } from "../latent_rows.ts";
import { Rng } from "../random.ts";
import { PART_REST, PART_VERDICT, ruleParts, verdictLatents } from "./verdict_rules.ts";
import {
  all,
  any,
  at,
  everyTime,
  file,
  latent,
  macro,
  not,
  probe,
  rule,
  series,
  SIGNALS,
  sparse,
  test,
} from "./test_helpers.ts";

function compile(rules: RuleDef[], macros = file([]).macros): CompiledPolicySet {
  return compilePolicySet([file(rules, { macros })], SIGNALS);
}

function batch(
  requestId: string,
  position: number,
  rows: SparseLatents[],
  ctx: Partial<TokenBatch["ctx"]> = {},
  extra: Partial<TokenBatch> = {},
): TokenBatch {
  return {
    ctx: { requestId, model: "m", ...ctx },
    position,
    tokens: rows.length,
    latents: new Map([["res", rows]]),
    firstRow: 0,
    ...extra,
  };
}

const fired = (fs: Firing[]) => fs.map((f) => [f.rule.id, f.positions]);

Deno.test("engine pooling by hand: 0,4,0,0,8 on latent 1, two frames", () => {
  const pools: [string, Pool, number][] = [
    ["token", { kind: "token" }, 5],
    ["max", { kind: "max", window: 2 }, 3],
    ["mean", { kind: "mean", window: 2 }, 1.5],
    ["roll", { kind: "rolling_mean_max", window: 2 }, 1.5],
    ["ema", { kind: "ema", halfLife: 1 }, 1.5],
    ["count", { kind: "count", window: 5, above: 3 }, 1],
  ];
  const set = compile(
    pools.map(([id, pool, thr]) => everyTime(id, test(latent(1), thr, { pool }))),
  );
  const e = new PolicyEngine(set);
  const rows = series(1, [0, 4, 0, 0, 8]);
  const first = e.evaluate(batch("r", 0, rows.slice(0, 2)));
  const second = e.evaluate(batch("r", 2, rows.slice(2)));
  // evaluated only where latent 1 is active (positions 1 and 4)
  assert.deepEqual(fired(first), [["max", [1]], ["mean", [1]], ["roll", [1]], ["ema", [1]]]);
  assert.deepEqual(fired(second), [
    ["token", [4]],
    ["max", [4]],
    ["mean", [4]],
    ["roll", [4]],
    ["ema", [4]],
    ["count", [4]],
  ]);
  assert.deepEqual(second.map((f) => f.value), [8, 8, 4, 4, 4.25, 2]);
  assert.deepEqual(second[0].signal, { encoder: "res", index: 1, kind: "latent" });
});

Deno.test("engine composition: all(A, not B) through a macro; any reports the test that held", () => {
  const set = compile([
    everyTime("guarded", all(test(latent(1), 1), not(macro("b")))),
    everyTime("either", any(test(latent(1), 5), test(latent(2), 1))),
  ], [{
    name: "b",
    condition: test(latent(2), 1, { pool: { kind: "max", window: 3 } }),
    source: at(30),
  }]);
  const e = new PolicyEngine(set);
  const rows = [sparse([[2, 5]]), sparse([[1, 2]]), sparse([]), sparse([[1, 2]])];
  const fs = e.evaluate(batch("r", 0, rows));
  // at 1 latent 2's max window (0..1) still holds 5; at 3 it does not
  assert.deepEqual(fired(fs), [["guarded", [3]], ["either", [0]]]);
  assert.deepEqual(fs[1].signal.index, 2);
  assert.equal(fs[1].value, 5);
});

Deno.test("engine scope: prompt, generation, both; windows start at the scope's first token", () => {
  const mean: Pool = { kind: "mean", window: 4 };
  const set = compile([
    everyTime("p", test(latent(1), 0), { scope: "prompt" }),
    everyTime("g", test(latent(1), 0), { scope: "generation" }),
    everyTime("gmean", test(latent(2), 1.5, { pool: mean }), { scope: "generation" }),
    everyTime("bmean", test(latent(2), 5.5, { pool: mean }), { scope: "both" }),
  ]);
  const e = new PolicyEngine(set);
  const pre = e.evaluate(batch("r", 0, [sparse([[1, 1], [2, 8]]), sparse([[2, 8]])], {
    phase: "prefill",
  }));
  assert.deepEqual(fired(pre), [["p", [0]], ["bmean", [0, 1]]]);
  const dec = e.evaluate(batch("r", 2, [sparse([[1, 1], [2, 2]])], { phase: "decode" }));
  // generation's mean is 2/1 (its window starts at 2); both's is (8+8+2)/3
  assert.deepEqual(fired(dec), [["g", [2]], ["gmean", [2]], ["bmean", [2]]]);
  assert.equal(dec[1].value, 2);
  assert.equal(dec[2].value, 6);
  // a frame without a phase counts for both
  const none = e.evaluate(batch("s", 0, [sparse([[1, 1]])]));
  assert.deepEqual(fired(none), [["p", [0]], ["g", [0]]]);
});

Deno.test("engine exceptions: tenant, model, metadata (every key must match), counted", () => {
  const set = compile([
    rule("a", test(latent(1), 0), {
      exceptions: [
        { tenant: ["t-ok"], source: at(5) },
        { model: ["m-ok"], metadata: { env: ["test", "dev"] }, source: at(6) },
      ],
    }),
  ]);
  const e = new PolicyEngine(set);
  const row = [sparse([[1, 1]])];
  assert.equal(e.evaluate(batch("1", 0, row, { tenant: "t-ok" })).length, 0);
  assert.equal(e.evaluate(batch("2", 0, row, { model: "m-ok", meta: { env: "dev" } })).length, 0);
  assert.equal(e.evaluate(batch("3", 0, row, { model: "m-ok" })).length, 1);
  assert.equal(e.evaluate(batch("4", 0, row, { model: "m", meta: { env: "dev" } })).length, 1);
  assert.equal(e.evaluate(batch("5", 0, row, { tenant: "other" })).length, 1);
  assert.equal(e.stats.excepted, 2);
});

function throttled(id: string, throttle: Throttle, over: Partial<RuleDef> = {}): RuleDef {
  return rule(id, test(latent(1), 0), { throttle, ...over });
}

Deno.test("engine suppression: request, none, tokens", () => {
  const set = compile([
    throttled("req", { suppress: { kind: "request" }, dedupKey: "{request_id}" }),
    throttled("none", { suppress: { kind: "none" }, dedupKey: "{request_id}" }),
    throttled("tok", { suppress: { kind: "tokens", n: 2 }, dedupKey: "{request_id}" }),
  ]);
  const e = new PolicyEngine(set);
  const on = (n: number) => series(1, new Array(n).fill(1));
  assert.deepEqual(fired(e.evaluate(batch("r", 0, on(1)))), [
    ["req", [0]],
    ["none", [0]],
    ["tok", [0]],
  ]);
  // 1, 2 are within 2 tokens of 0; 3 fires again
  assert.deepEqual(fired(e.evaluate(batch("r", 1, on(2)))), [["none", [1, 2]]]);
  assert.deepEqual(fired(e.evaluate(batch("r", 3, on(2)))), [["none", [3, 4]], ["tok", [3, 4]]]);
  assert.equal(e.stats.suppressed, 3);
  // another request has its own suppression
  assert.deepEqual(fired(e.evaluate(batch("s", 0, on(1)))).map(([id]) => id), [
    "req",
    "none",
    "tok",
  ]);
});

Deno.test("engine suppression: seconds per dedup key across requests (fake clock)", () => {
  let now = 1000;
  const set = compile([
    throttled("sec", { suppress: { kind: "seconds", s: 10 }, dedupKey: "{tenant}/{rule}" }),
  ]);
  const e = new PolicyEngine(set, { now: () => now });
  const row = series(1, [1]);
  const f = e.evaluate(batch("1", 0, row, { tenant: "a" }));
  assert.equal(f[0].dedupKey, "a/sec");
  assert.equal(e.evaluate(batch("2", 0, row, { tenant: "a" })).length, 0);
  assert.equal(e.evaluate(batch("3", 0, row, { tenant: "b" })).length, 1);
  now += 9_999;
  assert.equal(e.evaluate(batch("4", 0, row, { tenant: "a" })).length, 0);
  now += 1;
  assert.equal(e.evaluate(batch("5", 0, row, { tenant: "a" })).length, 1);
  assert.equal(e.stats.suppressed, 2);
});

Deno.test("engine rate limit: token bucket per rule across requests (fake clock)", () => {
  let now = 0;
  const set = compile([
    throttled("rl", {
      suppress: { kind: "none" },
      dedupKey: "{request_id}",
      rateLimit: { alerts: 2, seconds: 10 },
    }),
  ]);
  const e = new PolicyEngine(set, { now: () => now });
  const row = series(1, [1]);
  const n = (id: string) => e.evaluate(batch(id, 0, row)).length;
  assert.deepEqual([n("a"), n("b"), n("c")], [1, 1, 0]);
  assert.equal(e.stats.rateLimited, 1);
  now = 4_999; // 0.9998 tokens refilled
  assert.equal(n("d"), 0);
  now = 5_000;
  assert.equal(n("e"), 1);
  assert.equal(e.stats.rateLimited, 2);
});

Deno.test("engine swap: a rule's rate-limit bucket goes when a swapped-in set drops the rule", () => {
  const now = 0; // the clock stands still: no bucket refills
  const limited = throttled("rl", {
    suppress: { kind: "none" },
    dedupKey: "{request_id}",
    rateLimit: { alerts: 1, seconds: 60 },
  });
  const other = rule("other", test(latent(1), 0));
  const e = new PolicyEngine(compile([limited, other]), { now: () => now });
  const row = series(1, [1]);
  const ids = (id: string) => e.evaluate(batch(id, 0, row)).map((f) => f.rule.id);
  assert.deepEqual(ids("a"), ["rl", "other"]);
  assert.deepEqual(ids("b"), ["other"], "rl's bucket is empty");

  e.swap(compile([other])); // rl is gone: so is its bucket (at the next evaluate)
  assert.deepEqual(ids("c"), ["other"]);
  e.swap(compile([limited, other])); // the same rule (same hash) comes back
  assert.deepEqual(ids("d"), ["rl", "other"], "a fresh bucket, not the stale empty one");
  assert.equal(e.stats.rateLimited, 1);

  e.swap(compile([limited, other])); // kept across a swap that keeps the rule
  assert.deepEqual(ids("e"), ["other"]);
  assert.equal(e.stats.rateLimited, 2);
});

Deno.test("engine memory: capacity evicts the least recently seen, TTL sweep, endRequest", () => {
  let now = 0;
  const e = new PolicyEngine(compile([rule("a", test(latent(1), 0))]), {
    maxRequests: 2,
    ttlMs: 100,
    now: () => now,
  });
  const row = series(1, [1]);
  e.evaluate(batch("r1", 0, row));
  e.evaluate(batch("r2", 0, row));
  e.evaluate(batch("r1", 1, [])); // r1 seen again: r2 is now the stalest
  e.evaluate(batch("r3", 0, row));
  assert.deepEqual(e.stats.evicted, { ttl: 0, capacity: 1 });
  // r1 kept its request suppression; r2's state is gone, so it fires again
  assert.equal(e.evaluate(batch("r1", 1, row)).length, 0);
  assert.equal(e.evaluate(batch("r2", 1, row)).length, 1);
  assert.equal(e.stats.activeRequests, 2);
  now = 100;
  assert.equal(e.sweep(), 0);
  now = 101;
  assert.equal(e.sweep(), 2);
  assert.equal(e.stats.activeRequests, 0);
  e.evaluate(batch("r4", 0, row));
  assert.equal(e.endRequest("r4"), true);
  assert.equal(e.endRequest("r4"), false);
  assert.deepEqual(e.stats, {
    activeRequests: 0,
    evicted: { ttl: 2, capacity: 2 },
    ended: 1,
    suppressed: 1,
    rateLimited: 0,
    excepted: 0,
  });
});

Deno.test("engine options: out of range are RangeErrors", () => {
  const set = compile([]);
  assert.throws(() => new PolicyEngine(set, { maxRequests: 0 }), PolicyEngineOptionError);
  assert.throws(() => new PolicyEngine(set, { ttlMs: -1 }), RangeError);
});

Deno.test("engine swap: unchanged rules keep their state, changed ones start fresh", () => {
  const mean: Pool = { kind: "mean", window: 4 };
  const defs = (title: string) => [
    everyTime("kept", test(latent(2), 3, { pool: mean })),
    everyTime("changed", test(latent(2), 3, { pool: mean }), { title }),
    rule("once", test(latent(1), 0)),
    rule("once2", test(latent(1), 0), { title }),
  ];
  const e = new PolicyEngine(compile(defs("v1")));
  assert.deepEqual(
    fired(e.evaluate(batch("r", 0, [sparse([[1, 1], [2, 8]])]))).map(([id]) => id),
    ["kept", "changed", "once", "once2"],
  );
  const v1 = e.set.version;
  e.swap(compile(defs("v2")));
  assert.equal(e.set.version, v1, "the new set waits for the next evaluate");
  const fs = e.evaluate(batch("r", 1, [sparse([[1, 1], [2, 5]])]));
  // kept: (8+5)/2; changed: its window restarted, (0+5)/2 = 2.5 ≤ 3; once2 fires again
  assert.deepEqual(fired(fs), [["kept", [1]], ["once2", [1]]]);
  assert.equal(fs[0].value, 6.5);
  assert.notEqual(e.set.version, v1);
});

Deno.test("engine: labels, description template, text and meta fields", () => {
  const set = compile([
    rule("pi", test({ kind: "label", sae: "res", label: "prompt injection" }, 1), {
      description: "{title} in {request_id} ({tenant}) at {tokens}: {label}={value} " +
        "via {signal} '{text}' team={meta.team} {hook}",
    }),
  ]);
  const e = new PolicyEngine(set);
  const [f] = e.evaluate(
    batch("r", 10, [sparse([[3, 2.5]]), sparse([[3, 3]])], { meta: { team: "red" } }, {
      tokenText: ["ig", "nore"],
    }),
  );
  assert.deepEqual(f.signal, {
    encoder: "res",
    index: 3,
    label: "Prompt injection",
    kind: "latent",
  });
  // tokens that carry no space of their own are joined with a visible '·' (token_text.ts)
  assert.equal(
    f.description,
    "rule pi in r () at 10-11: Prompt injection=2.5 via res:3 'ig·nore' team=red ",
  );
  assert.equal(f.alert, true);
  assert.deepEqual(f.steer, []);
});

Deno.test("engine: probes are evaluated on every token, steer actions carried", () => {
  const set = compile([
    everyTime("low", test(probe(1), -1, { op: "below" }), {
      actions: [{ kind: "steer", steer: { kind: "abort", reason: "x" } }],
    }),
  ]);
  const e = new PolicyEngine(set);
  const rows = [-2, 0.5, -3].map((v) => sparse([[0, 0.1], [1, v]]));
  const [f] = e.evaluate({
    ctx: { requestId: "r", model: "m" },
    position: 0,
    tokens: 3,
    latents: new Map([["pr", rows]]),
    firstRow: 0,
  });
  assert.deepEqual(f.positions, [0, 2]);
  assert.equal(f.value, -2);
  assert.equal(f.alert, false);
  assert.deepEqual(f.steer, [{ kind: "abort", reason: "x" }]);
  assert.equal(f.signal.kind, "probe");
});

Deno.test("engine: rows are read from firstRow (a frame inside a larger batch)", () => {
  const e = new PolicyEngine(compile([everyTime("a", test(latent(1), 0))]));
  const rows = series(1, [0, 0, 1, 0]);
  const fs = e.evaluate(batch("r", 7, rows.slice(0, 2), {}, {
    latents: new Map([["res", rows]]),
    firstRow: 1,
  }));
  assert.deepEqual(fired(fs), [["a", [8]]]);
});

// ---------------------------------------------------------------------------
// Cases carried over from the v0 policy tests (src/core/policy_test.ts): per-token
// thresholds on one signal, as a v1 rule compiles to.

Deno.test("engine: a value equal to the threshold does not fire, strictly above does", () => {
  const e = new PolicyEngine(compile([
    everyTime("a", test(latent(0), 2)),
    everyTime("z", test(latent(5), 0)),
  ]));
  // an explicit 0 in a sparse row is not above threshold 0
  assert.deepEqual(e.evaluate(batch("r", 0, [sparse([[0, 2], [5, 0]])])), []);
  assert.deepEqual(fired(e.evaluate(batch("r", 1, [sparse([[0, 2.5], [5, 1e-3]])]))), [
    ["a", [1]],
    ["z", [1]],
  ]);
});

Deno.test("engine: a rule on an inactive latent never fires, even at threshold 0", () => {
  const e = new PolicyEngine(compile([everyTime("a", test(latent(4), 0))]));
  assert.deepEqual(e.evaluate(batch("r", 0, [sparse([[0, 100], [3, 7], [5, 9]])])), []);
  assert.deepEqual(e.evaluate(batch("r", 1, [sparse([])])), []);
});

Deno.test("engine: several rules on one latent each compare their own threshold, in rule order", () => {
  const e = new PolicyEngine(compile([
    everyTime("low", test(latent(7), 1), { severity: "low" }),
    everyTime("high", test(latent(7), 3)),
    everyTime("first", test(latent(2), 0)),
  ]));
  const fs = e.evaluate(batch("r", 0, [sparse([[2, 0.5], [7, 4]])]));
  assert.deepEqual(fired(fs), [["low", [0]], ["high", [0]], ["first", [0]]]);
  assert.deepEqual(fs.map((f) => [f.value, f.signal.index]), [[4, 7], [4, 7], [0.5, 2]]);
  assert.deepEqual(fired(e.evaluate(batch("r", 1, [sparse([[7, 2]])]))), [["low", [1]]]);
});

Deno.test("engine: rules of another SAE are not looked at", () => {
  const e = new PolicyEngine(compile([everyTime("a", test(latent(1, "res2"), 0))]));
  const row = [sparse([[1, 5]])];
  const on = (encoder: string, id: string) =>
    e.evaluate(batch(id, 0, row, {}, { latents: new Map([[encoder, row]]) }));
  assert.deepEqual(on("res", "1"), []);
  assert.deepEqual(fired(on("res2", "2")), [["a", [0]]]);
  assert.deepEqual(on("nope", "3"), []);
});

Deno.test("engine: many active latents (a TopK row of a large SAE): only watched ones fire", () => {
  const signals = new Map<string, SignalInfo>([["big", { kind: "sae", dSae: 4096 }]]);
  const watched: [string, number, number][] = [
    ["a", 5, 1],
    ["b", 1000, 0.5],
    ["c", 4095, 2],
    ["d", 77, 0],
    ["e", 1029, 1],
  ];
  const set = compilePolicySet([
    file(watched.map(([id, l, thr]) => everyTime(id, test(latent(l, "big"), thr)))),
  ], signals);
  const pairs: [number, number][] = [];
  for (let i = 0; i < 64; i++) pairs.push([i * 64 + 5, 0.1 * i]);
  pairs.push([4095, 3]);
  const active = new Map(pairs);
  const expected = watched
    .filter(([, l, thr]) => Math.fround(active.get(l) ?? 0) > thr)
    .map(([id, l]) => [id, Math.fround(active.get(l)!)]);
  const e = new PolicyEngine(set);
  const fs = e.evaluate(batch("r", 0, [], {}, {
    tokens: 1,
    latents: new Map([["big", [sparse(pairs)]]]),
  }));
  assert.deepEqual(fs.map((f) => [f.rule.id, f.value]), expected);
  assert.deepEqual(expected.map(([id]) => id), ["c", "e"]);
  // a short row: 5 at 1.5 > 1 and 77 at 0.25 > 0
  const short = e.evaluate(batch("r", 1, [], {}, {
    tokens: 1,
    latents: new Map([["big", [sparse([[5, 1.5], [77, 0.25]])]]]),
  }));
  assert.deepEqual(fired(short), [["a", [1]], ["d", [1]]]);
});

Deno.test("engine: a probe test above a negative threshold fires on scores above it", () => {
  const e = new PolicyEngine(compile([everyTime("lie-low", test(probe(0), -0.5))]));
  const on = (position: number, v: number) =>
    e.evaluate({
      ctx: { requestId: "r", model: "m" },
      position,
      tokens: 1,
      latents: new Map([["pr", [sparse([[0, v], [1, 0]])]]]),
      firstRow: 0,
    });
  // a probe reports every score: −0.2 > −0.5 fires, −0.7 does not
  assert.deepEqual(fired(on(0, -0.2)), [["lie-low", [0]]]);
  assert.deepEqual(on(1, -0.7), []);
});

// ---------------------------------------------------------------------------
// The engine (indexed, lazy) against a naive reference that updates every
// test on every token and evaluates by the definitions in ast.ts.

type Hist = Map<number, number>;

function pooled(pool: Pool, h: Hist, t: number, start: number): number {
  const v = (p: number) => h.get(p) ?? 0;
  const win = (N: number, at: number) => {
    const out: number[] = [];
    for (let p = Math.max(start, at - N + 1); p <= at; p++) out.push(v(p));
    return out;
  };
  const mean = (N: number, at: number) => {
    const w = win(N, at);
    let s = 0;
    for (const x of w) s += x;
    return s / w.length;
  };
  switch (pool.kind) {
    case "token":
      return v(t);
    case "max":
      return Math.max(...win(pool.window, t));
    case "mean":
      return mean(pool.window, t);
    case "rolling_mean_max": {
      let m = -Infinity;
      for (let p = start; p <= t; p++) m = Math.max(m, mean(pool.window, p));
      return m;
    }
    case "ema": {
      const r = Math.pow(2, -1 / pool.halfLife);
      const a = 1 - r;
      let e = 0;
      for (let p = start; p <= t; p++) e = a * v(p) + r * e;
      return e;
    }
    case "count":
      return win(pool.window, t).filter((x) => x > pool.above).length;
  }
}

interface RefResult {
  holds: boolean;
  witness?: number;
}

function refEval(
  c: CompiledCondition,
  val: (test: number) => number,
  trigger: (test: number) => boolean,
  neg: boolean,
): RefResult {
  switch (c.kind) {
    case "test": {
      const x = val(c.test);
      const holds = c.op === "above" ? x > c.threshold : x < c.threshold;
      return { holds, witness: holds && !neg && trigger(c.test) ? c.test : undefined };
    }
    case "not":
      return { holds: !refEval(c.of, val, trigger, !neg).holds };
    case "all": {
      const rs = c.of.map((x) => refEval(x, val, trigger, neg));
      if (!rs.every((r) => r.holds)) return { holds: false };
      return { holds: true, witness: rs.find((r) => r.witness !== undefined)?.witness };
    }
    case "any": {
      const r = c.of.map((x) => refEval(x, val, trigger, neg)).find((r) => r.holds);
      return r ?? { holds: false };
    }
  }
}

function refHolds(l: { op: "above" | "below"; threshold: number }, x: number): boolean {
  return l.op === "above" ? x > l.threshold : x < l.threshold;
}

function refLeaves(
  c: CompiledCondition,
  out: Map<number, Extract<CompiledCondition, { kind: "test" }>>,
): void {
  if (c.kind === "test") out.set(c.cond, c);
  else if (c.kind === "not") refLeaves(c.of, out);
  else for (const x of c.of) refLeaves(x, out);
}

/** Leaves outside `not` that make `c` hold (through all, and through the any branches that hold). */
function refSupport(c: CompiledCondition, val: (test: number) => number): Set<number> {
  const holds = (x: CompiledCondition) => refEval(x, val, () => false, false).holds;
  if (c.kind === "test") return holds(c) ? new Set([c.cond]) : new Set();
  if (c.kind === "not") return new Set();
  const out = new Set<number>();
  for (const x of c.of) {
    if (c.kind === "any" && !holds(x)) continue;
    for (const k of refSupport(x, val)) out.add(k);
  }
  return out;
}

function rowValue(row: SparseLatents, i: number): number | undefined {
  const k = row.indices.indexOf(i);
  return k < 0 ? undefined : row.values[k];
}

/** Per batch: rule id → [positions, value at the first]. */
function naive(set: CompiledPolicySet, batches: TokenBatch[]): Map<string, [number[], number]>[] {
  const reqs = new Map<
    string,
    { start: number[]; hist: Map<string, Hist>; prev: Map<string, Set<number>> }
  >();
  const scopeSlot = { prompt: 0, generation: 1, both: 2 };
  return batches.map((b) => {
    let req = reqs.get(b.ctx.requestId);
    if (!req) {
      reqs.set(
        b.ctx.requestId,
        req = { start: [NaN, NaN, NaN], hist: new Map(), prev: new Map() },
      );
    }
    const phase = b.ctx.phase;
    const inScope = (s: Scope) =>
      phase === undefined || s === "both" || (s === "prompt") === (phase === "prefill");
    for (const s of ["prompt", "generation", "both"] as const) {
      if (inScope(s) && Number.isNaN(req.start[scopeSlot[s]])) {
        req.start[scopeSlot[s]] = b.position;
      }
    }
    const out = new Map<string, [number[], number]>();
    for (let i = 0; i < b.tokens; i++) {
      const t = b.position + i;
      for (const r of set.rules) {
        if (!inScope(r.scope)) continue;
        const start = req.start[scopeSlot[r.scope]];
        let triggered = false;
        r.tests.forEach((x, k) => {
          const row = rowOf(b.latents.get(x.encoder), b.firstRow + i);
          const v = row ? rowValue(row, x.index) : undefined;
          const present = x.kind === "probe" ? row !== undefined : v !== undefined;
          const key = `${r.id}/${k}`;
          if (!req!.hist.has(key)) req!.hist.set(key, new Map());
          if (present) req!.hist.get(key)!.set(t, v ?? 0);
          if (present && x.trigger) triggered = true;
        });
        if (!triggered) continue;
        const val = (k: number) =>
          pooled(r.tests[k].pool, req!.hist.get(`${r.id}/${k}`)!, t, start);
        const res = refEval(r.condition, val, (k) => r.tests[k].trigger, false);
        // the leaves (by condition index) and which hold now
        const leaves = new Map<number, Extract<CompiledCondition, { kind: "test" }>>();
        refLeaves(r.condition, leaves);
        const holdsNow = new Set(
          [...leaves].filter(([, l]) => refHolds(l, val(l.test))).map(([k]) => k),
        );
        const prevKey = `${r.id}`;
        const before = req.prev.get(prevKey) ?? new Set<number>();
        const tracked = leaves.size >= 2 && leaves.size <= 31;
        if (tracked) req.prev.set(prevKey, holdsNow);
        if (!res.holds) continue;
        const supp = refSupport(r.condition, val);
        const present = (l: { test: number }) => {
          const x = r.tests[l.test];
          const row = rowOf(b.latents.get(x.encoder), b.firstRow + i);
          return x.kind === "probe" || (row !== undefined && rowValue(row, x.index) !== undefined);
        };
        const span = (l: { test: number }) => {
          const p = r.tests[l.test].pool;
          return p.kind === "token" ? 1 : p.kind === "ema" ? Infinity : p.window;
        };
        const ranked = [...supp].filter((k) => {
          const l = leaves.get(k)!;
          return r.tests[l.test].kind === "probe" || l.op === "above";
        }).sort((x, y) => {
          const lx = leaves.get(x)!, ly = leaves.get(y)!;
          const rose = (k: number) => (tracked && !before.has(k) ? 1 : 0);
          return rose(y) - rose(x) || Number(present(ly)) - Number(present(lx)) ||
            span(lx) - span(ly) || x - y;
        });
        const chosen = ranked[0] ??
          [...leaves.keys()].sort((x, y) => x - y).find((k) =>
            r.tests[leaves.get(k)!.test].trigger
          )!;
        const o = out.get(r.id);
        if (o) o[0].push(t);
        else out.set(r.id, [[t], val(leaves.get(chosen)!.test)]);
      }
    }
    return out;
  });
}

function randomPool(rng: Rng, sae: boolean): Pool {
  const w = 1 + Math.floor(rng.uniform() * 6);
  switch (Math.floor(rng.uniform() * 6)) {
    case 0:
      return { kind: "token" };
    case 1:
      return { kind: "max", window: w };
    case 2:
      return { kind: "mean", window: w };
    case 3:
      return { kind: "rolling_mean_max", window: w };
    case 4:
      return { kind: "ema", halfLife: 0.5 + rng.uniform() * 4 };
    default:
      return { kind: "count", window: w, above: sae ? rng.uniform() * 2 : rng.uniform() * 2 - 1 };
  }
}

function randomTest(rng: Rng, forceTrigger: boolean): Condition {
  const isProbe = rng.uniform() < 0.25;
  const pool = randomPool(rng, !isProbe);
  const op = forceTrigger && !isProbe ? "above" : rng.uniform() < 0.7 ? "above" : "below";
  const count = pool.kind === "count";
  const threshold = isProbe
    ? (count ? Math.floor(rng.uniform() * 3) : rng.uniform() * 2 - 1)
    : count
    ? Math.floor(rng.uniform() * 3) + (op === "below" ? 1 : 0)
    : op === "above"
    ? rng.uniform() * 3
    : 0.5 + rng.uniform() * 3;
  const signal = isProbe
    ? probe(Math.floor(rng.uniform() * 2))
    : latent(Math.floor(rng.uniform() * 6));
  return test(signal, threshold, { pool, op });
}

function randomCondition(rng: Rng, depth: number): Condition {
  const k = rng.uniform();
  if (depth === 0 || k < 0.4) return randomTest(rng, false);
  const kids = () =>
    Array.from(
      { length: 1 + Math.floor(rng.uniform() * 3) },
      () => randomCondition(rng, depth - 1),
    );
  if (k < 0.65) return all(...kids());
  if (k < 0.9) return any(...kids());
  return not(randomCondition(rng, depth - 1));
}

function randomRules(rng: Rng, n: number): RuleDef[] {
  const scopes: Scope[] = ["prompt", "generation", "both"];
  return Array.from(
    { length: n },
    (_, i) =>
      // every third rule is one test: the engine's shortcut for one token-pooled test is checked too
      everyTime(
        `r${i}`,
        i % 3 === 0 ? randomTest(rng, true) : all(randomTest(rng, true), randomCondition(rng, 2)),
        {
          scope: scopes[Math.floor(rng.uniform() * 3)],
        },
      ),
  );
}

function randomBatches(rng: Rng, requests: number, frames: number): TokenBatch[] {
  const state = Array.from({ length: requests }, () => ({ pos: 0, frames: 0 }));
  const out: TokenBatch[] = [];
  for (let f = 0; f < frames; f++) {
    const q = Math.floor(rng.uniform() * requests);
    const s = state[q];
    // sometimes a frame is lost: positions jump
    if (rng.uniform() < 0.1) s.pos += 1 + Math.floor(rng.uniform() * 40);
    const tokens = 1 + Math.floor(rng.uniform() * 5);
    const res: SparseLatents[] = [];
    const pr: SparseLatents[] = [];
    for (let i = 0; i < tokens; i++) {
      const pairs: [number, number][] = [];
      for (let l = 0; l < 6; l++) {
        if (rng.uniform() < 0.3) pairs.push([l, rng.uniform() * 4 + 0.01]);
      }
      res.push(sparse(pairs));
      pr.push(sparse([[0, rng.uniform() * 2 - 1], [1, rng.uniform() * 2 - 1]]));
    }
    const phase = rng.uniform() < 0.15 ? undefined : s.frames < 3 ? "prefill" : "decode";
    out.push({
      ctx: { requestId: `q${q}`, model: "m", ...(phase ? { phase } : {}) },
      position: s.pos,
      tokens,
      latents: new Map([["res", res], ["pr", pr]]),
      firstRow: 0,
    });
    s.pos += tokens;
    s.frames++;
  }
  return out;
}

/**
 * Run random rules over random traffic through the engine and the naive
 * reference, each batch handed to the engine as `place` makes it.
 */
function assertEngineMatchesNaive(
  seeds: number[],
  place: (b: TokenBatch, rng: Rng) => TokenBatch = (b) => b,
): void {
  for (const seed of seeds) {
    const rng = new Rng(seed);
    const set = compilePolicySet([file(randomRules(rng, 30))], SIGNALS);
    const batches = randomBatches(rng, 3, 60);
    const want = naive(set, batches);
    const engine = new PolicyEngine(set);
    let firings = 0;
    batches.forEach((b, i) => {
      const got = new Map(
        engine.evaluate(place(b, rng)).map((f) => [f.rule.id, [f.positions, f.value]]),
      );
      const ids = (m: Map<string, unknown>) => [...m.keys()].sort();
      assert.deepEqual(ids(got), ids(want[i]), `seed ${seed} batch ${i}`);
      for (const [id, [pos, v]] of want[i]) {
        const [gpos, gv] = got.get(id)! as [number[], number];
        assert.deepEqual(gpos, pos, `seed ${seed} batch ${i} rule ${id}`);
        // EMA over long gaps decays with one power (a few ulps from stepping)
        assert.ok(Math.abs(gv - v) <= 1e-12 * Math.max(1, Math.abs(v)), `${id}: ${gv} vs ${v}`);
        firings++;
      }
    });
    assert.ok(firings > 20, `seed ${seed}: only ${firings} firings compared`);
  }
}

Deno.test("engine (lazy, indexed) = naive per-token reference on random rules and traffic", () => {
  assertEngineMatchesNaive([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

Deno.test("engine: the steering rules, then the others, fire as the whole set does (the two parts of a gated batch)", () => {
  for (const seed of [21, 22, 23, 24, 25, 26]) {
    const rng = new Rng(seed);
    // every other rule steers; the rest only alert
    const rules = randomRules(rng, 30).map((r, i): RuleDef =>
      i % 2 === 0 ? r : {
        ...r,
        actions: [{ kind: "alert" }, { kind: "steer", steer: { kind: "abort" } }],
        throttle: i % 4 === 1
          ? r.throttle
          : { suppress: { kind: "tokens", n: 3 }, dedupKey: "{request_id}" },
      }
    );
    const set = compilePolicySet([file(rules)], SIGNALS);
    assert.deepEqual(ruleParts(set), { verdict: 15, rest: 15 });
    const watched = new Map(set.encoderIds.map((id) => [id, new Set(verdictLatents(set, id))]));
    const whole = new PolicyEngine(set);
    const parts = new PolicyEngine(set);
    let firings = 0, steering = 0;
    for (const [i, b] of randomBatches(rng, 3, 60).entries()) {
      const want = whole.evaluate(b);
      // the first part sees only the latents the steering rules read, as serve encodes them
      const only = new Map([...b.latents].map(([id, rows]) => [
        id,
        (rows as SparseLatents[]).map((row) =>
          sparse(
            [...row.indices].flatMap((l, k) =>
              watched.get(id)?.has(l) ? [[l, row.values[k]] as [number, number]] : []
            ),
          )
        ),
      ]));
      const first = parts.evaluate({ ...b, latents: only }, PART_VERDICT);
      const second = parts.evaluate(b, PART_REST);
      assert.ok(first.every((f) => f.steer.length > 0), `seed ${seed} batch ${i}`);
      assert.ok(second.every((f) => f.steer.length === 0), `seed ${seed} batch ${i}`);
      const got = [...first, ...second].sort((x, y) => x.rule.index - y.rule.index);
      const view = (fs: Firing[]) =>
        fs.map((f) => [f.rule.id, f.positions, f.value, f.completedBy, f.conditionValues]);
      assert.deepEqual(view(got), view(want), `seed ${seed} batch ${i}`);
      firings += want.length;
      steering += first.length;
    }
    assert.ok(steering > 10 && firings - steering > 10, `seed ${seed}: ${steering} of ${firings}`);
    assert.deepEqual(parts.stats, whole.stats);
  }
});

Deno.test("engine: batch tables (LatentRows) read like per-token rows, from any first row", () => {
  // the serving path hands the engine one table per batch, each frame a stretch of it: the same
  // traffic, every frame placed inside a larger table at a random row, must fire as the naive
  // reference on per-token rows does
  assertEngineMatchesNaive([101, 102, 103, 104, 105, 106], (b, rng) => {
    const before = Math.floor(rng.uniform() * 4), after = Math.floor(rng.uniform() * 3);
    const noise = (n: number) =>
      Array.from({ length: n }, () => sparse([[Math.floor(rng.uniform() * 6), 9]]));
    const table = (rows: SparseLatents[]) =>
      LatentRows.from([...noise(before), ...rows, ...noise(after)]);
    const latents = new Map(
      [...b.latents].map(([id, rows]) => [id, table(rows as SparseLatents[])]),
    );
    return { ...b, latents, firstRow: before };
  });
});

Deno.test("engine: firings come out in rule order when latent order is the reverse (few and many)", () => {
  for (const n of [5, 32, 33, 60]) {
    // rule i watches latent n - 1 - i: candidates arrive in reverse rule order
    const e = new PolicyEngine(compilePolicySet(
      [file(Array.from({ length: n }, (_, i) => everyTime(`r${i}`, test(latent(n - 1 - i), 0))))],
      new Map<string, SignalInfo>([["res", { kind: "sae", dSae: 128 }]]),
    ));
    const row = sparse(Array.from({ length: n }, (_, l) => [l, 1 + l] as [number, number]));
    const fs = e.evaluate(batch(`req-${n}`, 0, [row, row]));
    const want = Array.from({ length: n }, (_, i) => [`r${i}`, [0, 1]]);
    assert.deepEqual(fired(fs), want, `${n} rules`);
    assert.deepEqual(fs.map((f) => f.value), Array.from({ length: n }, (_, i) => n - i), `${n}`);
  }
});
