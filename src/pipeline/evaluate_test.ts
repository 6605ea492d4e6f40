import assert from "node:assert/strict";
import type { Frame } from "../core/frame/format.ts";
import type { SparseLatents } from "../core/sae.ts";
import { Evaluator, tokenBatch } from "./evaluate.ts";
import type { Generation } from "./generation.ts";
import { frame, HOOK, MODEL, policies, row } from "./testdata/fixtures.ts";

const RULE = "version: 1\nrules:\n  - id: dim0\n    title: dimension 0 high\n    severity: high\n" +
  "    when: { sae: s, latent: 0, above: 1 }\n";

function gen(): Generation {
  return { encoders: new Map(), policies: policies(RULE) };
}

Deno.test("evaluate: alerts as values, stamped with the frame's time; nothing fired is one shared outcome", () => {
  const g = gen();
  const ev = new Evaluator(g.policies, { monitor: "mon", dIn: 2 });
  const f = frame([[0, 0], [0, 0]]);
  const latents = new Map([["s", [row({}), row({ 0: 3 })]]]);
  const o = ev.evaluate(g, f, 0, latents, Date.UTC(2025, 0, 1));
  assert.equal(o.alerts.length, 1);
  assert.equal(o.alerts[0].time, "2025-01-01T00:00:00.000Z");
  assert.equal(o.alerts[0].policy.id, "dim0");
  assert.deepEqual(o.alerts[0].evidence.map((e) => [e.position, e.value]), [[1, 3]]);
  assert.equal(o.verdict, "continue");
  assert.deepEqual(o.commands, []);
  const quiet = ev.evaluate(g, f, 0, new Map([["s", [row({}), row({})]]]));
  assert.equal(quiet.firings.length, 0);
  assert.equal(ev.evaluate(g, f, 0, new Map([["s", [row({}), row({})]]])), quiet);
  // shared: neither it nor its arrays can be changed by one caller for the others
  assert.ok(Object.isFrozen(quiet));
  for (const a of [quiet.firings, quiet.alerts, quiet.commands, quiet.skipped]) {
    assert.ok(Object.isFrozen(a));
  }
  assert.throws(() => (quiet.alerts as unknown[]).push(1), TypeError);
});

Deno.test("evaluate: a batch in order, rows per frame, a failing frame does not stop the others", () => {
  const g = gen();
  const ev = new Evaluator(g.policies, { monitor: "mon", dIn: 2 });
  const a = frame([[0, 0]], "a");
  const b = { ...frame([[0, 0]], "b"), endOfRequest: false };
  const empty = frame([], "c");
  const latents = new Map([["s", [row({ 0: 2 }), row({ 0: 5 })]]]);
  const out = ev.evaluateBatch(g, [a, empty, b], latents);
  assert.deepEqual(out.alerts.map((x) => [x.requestId, x.latent.max]), [["a", 2], ["b", 5]]);
  assert.equal(out.frames.length, 3);
  // the first frame's read of its latents throws; the second is still evaluated
  let calls = 0;
  const rows = [row({ 0: 2 }), row({ 0: 5 })];
  const flaky = {
    get: (id: string) => {
      if (calls++ === 0) throw new Error("boom");
      return id === "s" ? rows : undefined;
    },
  } as unknown as ReadonlyMap<string, SparseLatents[]>;
  const bad = ev.evaluateBatch(g, [frame([[0, 0]], "d"), frame([[0, 0]], "e")], flaky);
  assert.equal((bad.frames[0] as { error: Error }).error.message, "boom");
  assert.deepEqual(bad.alerts.map((x) => x.requestId), ["e"]);
});

Deno.test("evaluate: end markers end the request's state", () => {
  const g = gen();
  const ev = new Evaluator(g.policies, { monitor: "mon", dIn: 2 });
  const f = { ...frame([[0, 0]], "r"), endOfRequest: true };
  ev.evaluateBatch(g, [f], new Map([["s", [row({ 0: 2 })]]]));
  assert.equal(ev.stats.activeRequests, 0);
  assert.equal(ev.stats.ended, 1);
});

Deno.test("evaluate: tokenBatch carries the frame's context, only the fields it has", () => {
  const f = frame([[1, 0], [2, 0]]);
  const latents = new Map<string, SparseLatents[]>();
  assert.deepEqual(tokenBatch(f, 3, latents), {
    ctx: { requestId: "r1", model: MODEL, hook: HOOK },
    position: 0,
    tokens: 2,
    latents,
    firstRow: 3,
  });
  const g: Frame = { ...f, tenant: "t", meta: { k: "v" }, phase: "decode", tokenText: ["a", "b"] };
  assert.deepEqual(tokenBatch(g, 0, latents), {
    ctx: {
      requestId: "r1",
      model: MODEL,
      hook: HOOK,
      tenant: "t",
      meta: { k: "v" },
      phase: "decode",
    },
    position: 0,
    tokens: 2,
    latents,
    firstRow: 0,
    tokenText: ["a", "b"],
  });
});
