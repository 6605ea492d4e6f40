import assert from "node:assert/strict";
import type { Frame } from "../core/frame/format.ts";
import type { SparseLatents } from "../core/sae.ts";
import { Evaluator, type FrameOutcome, tokenBatch } from "./evaluate.ts";
import type { Generation } from "./generation.ts";
import { frame, HOOK, MODEL, policies, row } from "./testdata/fixtures.ts";
import { Rng } from "../core/random.ts";
import { resolveSteerAction } from "../core/steer/resolve.ts";
import { verdictLatents } from "../core/policy/verdict_rules.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import type { SteerOp } from "../core/steer/protocol.ts";

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

const SPLIT_RULES = `version: 2
rules:
  - id: alert-0
    title: latent 0
    severity: low
    when: { sae: s, latent: 0, above: 1 }
    suppress: none
  - id: steer-1
    title: latent 1 steers
    severity: high
    when: { sae: s, latent: 1, above: 2 }
    suppress: none
    actions: [alert, { steer: abort }]
  - id: alert-1
    title: latent 1 lower
    severity: low
    when: { sae: s, latent: 1, above: 1 }
    suppress: { tokens: 2 }
  - id: steer-3
    title: latent 3 over a window, steers only
    severity: high
    when: { sae: s, latent: 3, above: 1.5, pool: { mean: 3 } }
    actions: [{ steer: abort }]
  - id: alert-2
    title: latent 2 over a window
    severity: medium
    when: { sae: s, latent: 2, above: 3, pool: { max: 4 } }
    suppress: none
`;

Deno.test("evaluate: the steering rules' pass, then the others', gives each batch what one evaluation gives it", () => {
  const set = policies(SPLIT_RULES);
  const steerOps = new Map<SteerAction, SteerOp>(
    set.rules.flatMap((r) => r.steer.map((a) => [a, resolveSteerAction(a, new Map(), 2)])),
  );
  const g: Generation = { encoders: new Map(), policies: set, steerOps };
  const clock = () => {
    let t = Date.UTC(2026, 0, 1);
    return () => (t += 7);
  };
  const whole = new Evaluator(set, { monitor: "mon", dIn: 2, now: clock() });
  const split = new Evaluator(set, { monitor: "mon", dIn: 2, now: clock() });
  const steering = new Set(verdictLatents(set, "s"));
  assert.deepEqual([...steering], [1, 3]);
  const rng = new Rng(5);
  const positions = new Map<string, number>();
  let alerts = 0, aborts = 0, splits = 0;
  for (let batch = 0; batch < 80; batch++) {
    const frames: Frame[] = [];
    const rows: SparseLatents[] = [];
    for (let f = 0; f < 1 + Math.floor(rng.uniform() * 4); f++) {
      const id = `r${Math.floor(rng.uniform() * 3)}-${Math.floor(batch / 20)}`;
      const tokens = Math.floor(rng.uniform() * 3); // some frames hold no tokens
      const at = positions.get(id) ?? 0;
      positions.set(id, at + tokens);
      frames.push({
        ...frame(Array.from({ length: tokens }, () => [0, 0]), id),
        position: at,
        endOfRequest: rng.uniform() < 0.1,
      });
      for (let t = 0; t < tokens; t++) {
        const values: Record<number, number> = {};
        for (let l = 0; l < 4; l++) if (rng.uniform() < 0.5) values[l] = rng.uniform() * 4;
        rows.push(row(values));
      }
    }
    const all = new Map([["s", rows]]);
    const want = whole.evaluateBatch(g, frames, all);
    // the first pass reads only the steering rules' latents, as serve encodes them
    const early = new Map([[
      "s",
      rows.map((r) => {
        const kept: Record<number, number> = {};
        r.indices.forEach((l, k) => {
          if (steering.has(l)) kept[l] = r.values[k];
        });
        return row(kept);
      }),
    ]]);
    if (!split.canSplit(frames)) {
      // a batch where a request ends is evaluated in one pass (serve does the same)
      assert.ok(frames.some((f) => f.endOfRequest));
      assert.deepEqual(split.evaluateBatch(g, frames, all).alerts, want.alerts, `batch ${batch}`);
      continue;
    }
    splits++;
    const first = split.evaluateVerdicts(g, frames, early);
    first.frames.forEach((o, i) => {
      const w = want.frames[i] as FrameOutcome;
      assert.equal((o as FrameOutcome).verdict, w.verdict, `batch ${batch} frame ${i}`);
      assert.deepEqual((o as FrameOutcome).commands, w.commands, `batch ${batch} frame ${i}`);
    });
    const got = split.finishBatch(g, frames, all, first);
    assert.deepEqual(got.alerts, want.alerts, `batch ${batch}`);
    assert.deepEqual(
      got.frames.map((o) => (o as FrameOutcome).firings.map((f) => f.rule.id)),
      want.frames.map((o) => (o as FrameOutcome).firings.map((f) => f.rule.id)),
      `batch ${batch}`,
    );
    alerts += want.alerts.length;
    aborts += want.frames.filter((o) => (o as FrameOutcome).verdict === "abort").length;
  }
  assert.deepEqual(split.stats, whole.stats);
  assert.ok(alerts > 40 && aborts > 5, `${alerts} alerts, ${aborts} aborts compared`);
  assert.ok(splits > 50, `only ${splits} batches in two passes`);
});

Deno.test("evaluate: a batch is split only where no request ends in it and its frames fit the engine's requests", () => {
  const g = gen();
  const ev = new Evaluator(g.policies, { monitor: "mon", dIn: 2, maxRequests: 2 });
  const a = frame([[0, 0]], "a"), b = frame([[0, 0]], "b"), c = frame([[0, 0]], "c");
  assert.ok(ev.canSplit([a, b]));
  assert.ok(!ev.canSplit([{ ...a, endOfRequest: true }, b]));
  assert.ok(!ev.canSplit([a, b, c]));
});
