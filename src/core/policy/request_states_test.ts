import assert from "node:assert/strict";
import { PolicyEngineOptionError, type RuleState } from "./engine_types.ts";
import { RequestStates } from "./request_states.ts";

const NO_GATE = { suppressed: 0, rateLimited: 0, excepted: 0 };
const ruleState = (held: number): RuleState => ({ tests: [], held });

Deno.test("request states: a new request starts empty, seen now; a used one is the same object", () => {
  let now = 7;
  const states = new RequestStates({ maxRequests: 4, ttlMs: 100, now: () => now });
  const r1 = states.use("r1");
  assert.equal(r1.lastSeen, 7);
  assert.deepEqual(r1.start, [NaN, NaN, NaN]);
  assert.equal(r1.rules.size, 0);
  now = 9;
  assert.equal(states.use("r1"), r1);
  assert.equal(r1.lastSeen, 9);
  assert.equal(states.stats(NO_GATE).activeRequests, 1);
});

Deno.test("request states: past maxRequests the least recently used goes, counted as capacity", () => {
  const states = new RequestStates({ maxRequests: 2, ttlMs: 100, now: () => 0 });
  const r1 = states.use("r1");
  states.use("r2");
  states.use("r1"); // r2 is now the stalest
  states.use("r3");
  assert.equal(states.use("r1"), r1); // kept
  assert.equal(states.stats(NO_GATE).evicted.capacity, 1);
  // r2 was evicted: using it again makes a fresh state and evicts r3
  states.use("r2");
  assert.deepEqual(states.stats(NO_GATE).evicted, { ttl: 0, capacity: 2 });
  assert.equal(states.stats(NO_GATE).activeRequests, 2);
});

Deno.test("request states: sweep evicts those idle longer than ttlMs, least recent first", () => {
  let now = 0;
  const states = new RequestStates({ maxRequests: 10, ttlMs: 100, now: () => now });
  states.use("a");
  now = 50;
  states.use("b");
  assert.equal(states.sweep(100), 0); // a idle exactly 100 ms: kept
  assert.equal(states.sweep(101), 1); // a idle 101 ms: evicted; b idle 51 ms
  assert.equal(states.sweep(151), 1);
  const { activeRequests, evicted, ended } = states.stats(NO_GATE);
  assert.deepEqual([activeRequests, evicted, ended], [0, { ttl: 2, capacity: 0 }, 0]);
});

Deno.test("request states: end drops a request once, counted as ended", () => {
  const states = new RequestStates({ maxRequests: 10, ttlMs: 100, now: () => 0 });
  states.use("r1");
  assert.equal(states.end("r1"), true);
  assert.equal(states.end("r1"), false);
  assert.equal(states.end("never"), false);
  const s = states.stats({ suppressed: 3, rateLimited: 2, excepted: 1 });
  assert.deepEqual(s, {
    activeRequests: 0,
    evicted: { ttl: 0, capacity: 0 },
    ended: 1,
    suppressed: 3,
    rateLimited: 2,
    excepted: 1,
  });
  // the counts returned are a copy
  s.evicted.ttl = 99;
  assert.equal(states.stats(NO_GATE).evicted.ttl, 0);
});

Deno.test("request states: remap moves each request's rule states to the new indices", () => {
  const states = new RequestStates({ maxRequests: 10, ttlMs: 100, now: () => 0 });
  const a = states.use("a");
  const b = states.use("b");
  const s0 = ruleState(1), s1 = ruleState(2), s2 = ruleState(3);
  a.rules.set(0, s0).set(1, s1);
  b.rules.set(2, s2);
  states.remap([2, -1, 0]); // rule 0 -> 2, rule 1 goes, rule 2 -> 0
  assert.deepEqual([...a.rules], [[2, s0]]);
  assert.deepEqual([...b.rules], [[0, s2]]);
});

Deno.test("request states: maxRequests below 1 or not an integer, ttlMs not above 0, throw", () => {
  const now = () => 0;
  const cases: [number, number, string][] = [
    [0, 1, "maxRequests: expected an integer ≥ 1, found 0"],
    [-1, 1, "maxRequests: expected an integer ≥ 1, found -1"],
    [1.5, 1, "maxRequests: expected an integer ≥ 1, found 1.5"],
    [NaN, 1, "maxRequests: expected an integer ≥ 1, found NaN"],
    [1, 0, "ttlMs: expected a duration > 0, found 0"],
    [1, -5, "ttlMs: expected a duration > 0, found -5"],
    [1, NaN, "ttlMs: expected a duration > 0, found NaN"],
  ];
  for (const [maxRequests, ttlMs, message] of cases) {
    assert.throws(
      () => new RequestStates({ maxRequests, ttlMs, now }),
      (e) => e instanceof PolicyEngineOptionError && e.message === message,
    );
  }
  assert.equal(new RequestStates({ maxRequests: 3, ttlMs: 1, now }).maxRequests, 3);
});
