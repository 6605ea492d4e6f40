import assert from "node:assert/strict";
import {
  compilePolicySet,
  formatProblem,
  indexEntries,
  PolicyCompileError,
  type PolicyProblem,
  type SignalInfo,
} from "./compile.ts";
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
  SIGNALS,
  test,
} from "./test_helpers.ts";
import type { PolicyFileDef } from "./ast.ts";
import { PolicyEngine } from "./engine.ts";

function compileError(
  files: PolicyFileDef[],
  signals: ReadonlyMap<string, SignalInfo> = SIGNALS,
): PolicyCompileError {
  try {
    compilePolicySet(files, signals);
  } catch (err) {
    if (err instanceof PolicyCompileError) return err;
    throw err;
  }
  assert.fail("expected a PolicyCompileError, none was thrown");
}

/** The one problem of `files`, as `code @ file:line: reason`. */
function only(files: PolicyFileDef[]): PolicyProblem {
  const e = compileError(files);
  assert.equal(e.problems.length, 1, e.message);
  return e.problems[0];
}

Deno.test("compile: watched latents, encoder ids, tests shared per signal and pooling", () => {
  const set = compilePolicySet([
    file([
      rule("a", all(test(latent(9), 1), test(latent(9), 5), not(test(latent(2), 3)))),
      rule("b", test(probe(1), 0.5)),
      rule("c", test(latent(1, "res2"), 0)),
    ]),
  ], SIGNALS);
  assert.deepEqual([...set.watchedLatents("res")], [2, 9]);
  assert.deepEqual([...set.watchedLatents("pr")], [1]);
  assert.deepEqual([...set.watchedLatents("nope")], []);
  assert.deepEqual(set.encoderIds, ["pr", "res", "res2"]);
  assert.equal(set.rules[0].tests.length, 2);
  assert.deepEqual(set.rules[0].tests.map((t) => t.trigger), [true, false]);
  assert.equal(set.warnings.length, 0);
  assert.match(set.version, /^[0-9a-f]{32}$/);
});

Deno.test("compile: version and rule hashes ignore source lines but follow content", () => {
  const a = compilePolicySet([file([rule("a", test(latent(1), 2))])], SIGNALS);
  const moved = compilePolicySet(
    [file([rule("a", test(latent(1), 2, { line: 99 }), { source: at(50) })])],
    SIGNALS,
  );
  const changed = compilePolicySet([file([rule("a", test(latent(1), 3))])], SIGNALS);
  assert.equal(a.version, moved.version);
  assert.equal(a.rules[0].hash, moved.rules[0].hash);
  assert.notEqual(a.version, changed.version);
  assert.notEqual(a.rules[0].hash, changed.rules[0].hash);
});

Deno.test("compile: macros (nested), lists of latents and labels resolve", () => {
  const set = compilePolicySet([
    file([
      rule("a", all(macro("m1"), test({ kind: "latents", sae: "res", indices: { list: "L" } }, 1))),
      rule("b", test({ kind: "label", sae: "res", label: "  prompt INJECTION " }, 1)),
    ], {
      macros: [
        { name: "m1", condition: any(macro("m2"), test(latent(7), 1)), source: at(30) },
        { name: "m2", condition: test(latent(8), 1), source: at(31) },
      ],
      lists: [{ name: "L", items: [11, 12], source: at(40) }],
    }),
  ], SIGNALS);
  assert.deepEqual([...set.watchedLatents("res")], [3, 7, 8, 11, 12]);
  assert.equal(set.rules[1].tests[0].index, 3);
  assert.equal(set.rules[1].tests[0].label, "Prompt injection");
  assert.equal(set.warnings.length, 0);
});

Deno.test("compile error: duplicate rule ids across files", () => {
  const p = only([
    file([rule("a", test(latent(1), 1))]),
    file([rule("a", test(latent(1), 1), { source: at(7, "q.yaml") })], { name: "q.yaml" }),
  ]);
  assert.equal(p.code, "duplicate-rule");
  assert.equal(formatProblem(p).split(":").slice(0, 2).join(":"), "q.yaml:7");
  assert.match(p.reason, /already defined at p\.yaml:1/);
});

Deno.test("compile error: duplicate macro and list names", () => {
  const e = compileError([
    file([
      rule("a", all(macro("m"), test({ kind: "latents", sae: "res", indices: { list: "L" } }, 1))),
    ], {
      macros: [{ name: "m", condition: test(latent(1), 1), source: at(30) }],
      lists: [{ name: "L", items: [1], source: at(40) }],
    }),
    file([], {
      name: "q.yaml",
      macros: [{ name: "m", condition: test(latent(1), 1), source: at(3, "q.yaml") }],
      lists: [{ name: "L", items: [1], source: at(4, "q.yaml") }],
    }),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.code, formatProblem(p).split(": ")[0]]), [
    ["duplicate-list", "q.yaml:4"],
    ["duplicate-macro", "q.yaml:3"],
  ]);
});

Deno.test("compile error: unknown encoder, wrong kind, latent out of range (all collected)", () => {
  const e = compileError([
    file([
      rule("a", test(latent(1, "nope"), 1, { line: 11 })),
      rule("b", test(latent(1, "pr"), 1, { line: 12 })),
      rule("c", test(probe(0, "res"), 1, { line: 13 })),
      rule("d", test(latent(32), 1, { line: 14 })),
      rule("e", test(probe(2), 1, { line: 15 })),
      rule("f", test(latent(1.5), 1, { line: 16 })),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.rule, p.code, p.source.line]), [
    ["a", "unknown-encoder", 11],
    ["b", "wrong-encoder-kind", 12],
    ["c", "wrong-encoder-kind", 13],
    ["d", "latent-range", 14],
    ["e", "latent-range", 15],
    ["f", "latent-range", 16],
  ]);
  assert.match(
    e.problems[0].reason,
    /unknown SAE 'nope'; expected one the monitor loads \(res, res2\)/,
  );
  assert.match(e.problems[3].reason, /expected a latent index in 0\.\.31 .* found 32/);
  assert.match(e.message, /^p\.yaml:11: rule 'a': unknown SAE/);
});

Deno.test("compile error: labels unknown, ambiguous (candidates listed), none loaded", () => {
  const e = compileError([
    file([
      rule("a", test({ kind: "label", sae: "res", label: "injection" }, 1, { line: 11 })),
      rule("b", test({ kind: "label", sae: "res", label: "DECEPTION" }, 1, { line: 12 })),
      rule("c", test({ kind: "label", sae: "res2", label: "x" }, 1, { line: 13 })),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.code, p.source.line]), [
    ["unknown-label", 11],
    ["ambiguous-label", 12],
    ["no-labels", 13],
  ]);
  assert.match(e.problems[0].reason, /labels containing it: 3 'Prompt injection'/);
  assert.match(e.problems[1].reason, /found 2 \(4 'deception', 5 'Deception'\)/);
});

Deno.test("compile error: a misspelled label gets the closest one, case and spaces ignored", () => {
  const e = compileError([
    file([
      rule("a", test({ kind: "label", sae: "res", label: "prompt injecton" }, 1, { line: 11 })),
      rule("b", test({ kind: "label", sae: "res", label: "PromptInjection" }, 1, { line: 12 })),
      rule("c", test({ kind: "label", sae: "res", label: "zzzz" }, 1, { line: 13 })),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => p.reason), [
    "unknown latent label 'prompt injecton' for SAE 'res'; expected a loaded label (matched " +
    "exactly, ignoring case) (did you mean 'Prompt injection'?)",
    "unknown latent label 'PromptInjection' for SAE 'res'; expected a loaded label (matched " +
    "exactly, ignoring case) (did you mean 'Prompt injection'?)",
    "unknown latent label 'zzzz' for SAE 'res'; expected a loaded label (matched exactly, " +
    "ignoring case)",
  ]);
});

Deno.test("compile error: unknown macro, macro cycle (reported once), unknown list", () => {
  const e = compileError([
    file([
      rule("a", macro("nope", 11)),
      rule(
        "b",
        test({ kind: "latents", sae: "res", indices: { list: "nolist" } }, 1, { line: 12 }),
      ),
      rule("c", macro("x", 13)),
      rule("d", test(latent(1), 1), {
        exceptions: [{ tenant: { list: "tenants" }, source: at(14) }],
      }),
    ], {
      macros: [
        { name: "x", condition: macro("y", 31), source: at(30) },
        { name: "y", condition: macro("x", 33), source: at(32) },
      ],
    }),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.code, p.source.line]), [
    ["macro-cycle", 33],
    ["unknown-macro", 11],
    ["unknown-list", 12],
    ["unknown-list", 14],
  ]);
  assert.match(e.problems[0].reason, /macro cycle: x → y → x/);
});

Deno.test("compile error: thresholds, pooling parameters, tests that fire on every token", () => {
  const e = compileError([
    file([
      rule("a", test(latent(1), NaN, { line: 11 })),
      rule("b", test(latent(1), -0.5, { line: 12 })),
      rule("c", test(latent(1), 1, { line: 13, pool: { kind: "max", window: 0 } })),
      rule("d", test(latent(1), 1, { line: 14, pool: { kind: "ema", halfLife: -1 } })),
      rule("e", test(latent(1), 1, { line: 15, pool: { kind: "count", window: 4, above: -1 } })),
      // probes: negative thresholds are fine
      rule("f", test(probe(0), -3, { pool: { kind: "count", window: 4, above: -1 } })),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.rule, p.code, p.source.line]), [
    ["a", "threshold", 11],
    ["b", "fires-every-token", 12],
    ["c", "pool", 13],
    ["d", "pool", 14],
    ["e", "fires-every-token", 15],
  ]);
  assert.match(e.problems[1].reason, /expected an 'above' threshold ≥ 0 .* found -0\.5/);
});

Deno.test("compile error: a rule with only guards has no trigger", () => {
  const e = compileError([
    file([
      rule("a", test(latent(1), 2, { op: "below" })),
      rule("b", not(test(latent(1), 2))),
      rule("c", not(test(probe(0), 2))),
      // fine: a negated below is a trigger, and so is a probe test
      rule("d", not(test(latent(1), 2, { op: "below" }))),
      rule("e", test(probe(0), 0.2, { op: "below" })),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.rule, p.code]), [
    ["a", "no-trigger"],
    ["b", "no-trigger"],
    ["c", "no-trigger"],
  ]);
});

Deno.test("compile error: empty all, bad steer and throttle", () => {
  const e = compileError([
    file([
      rule("a", all()),
      rule("b", test(latent(1), 1), {
        actions: [
          { kind: "steer", steer: { kind: "clamp", sae: "res", latent: 99, value: 0 } },
          { kind: "steer", steer: { kind: "ablate", sae: "pr", latent: 0 } },
          { kind: "steer", steer: { kind: "add", scale: 1, direction: { vector: [] } } },
        ],
      }),
      rule("c", test(latent(1), 1), {
        throttle: {
          suppress: { kind: "tokens", n: 0 },
          dedupKey: "{request_id}",
          rateLimit: { alerts: 0, seconds: 0 },
        },
      }),
    ]),
  ]);
  assert.deepEqual(e.problems.map((p) => [p.rule, p.code]), [
    ["a", "empty-condition"],
    ["b", "steer"],
    ["b", "steer"],
    ["b", "steer"],
    ["c", "throttle"],
    ["c", "throttle"],
    ["c", "throttle"],
  ]);
});

Deno.test("compile warnings: unused macro and list, disabled rule, no actions, placeholders", () => {
  const set = compilePolicySet([
    file([
      rule("a", test(latent(1), 1), { enabled: false, source: at(5) }),
      rule("b", test(latent(1), 1), {
        source: at(6),
        actions: [],
        description: "{rule} {tenat} {meta.team}",
        throttle: { suppress: { kind: "request" }, dedupKey: "{oops}" },
      }),
    ], {
      macros: [
        { name: "unused", condition: macro("inner"), source: at(30) },
        { name: "inner", condition: test(latent(1), 1), source: at(31) },
      ],
      lists: [{ name: "L", items: [1], source: at(40) }],
    }),
  ], SIGNALS);
  assert.deepEqual(set.warnings.map((w) => [w.code, w.source.line, w.rule]), [
    ["disabled-rule", 5, "a"],
    ["unknown-placeholder", 6, "b"],
    ["unknown-placeholder", 6, "b"],
    ["no-actions", 6, "b"],
    ["unused-macro", 30, undefined],
    ["unused-macro", 31, undefined],
    ["unused-list", 40, undefined],
  ]);
  assert.match(set.warnings[1].reason, /description: unknown placeholder \{tenat\}/);
  assert.match(set.warnings[2].reason, /dedup key: unknown placeholder \{oops\}/);
  assert.deepEqual(set.rules.map((r) => r.id), ["b"]);
  assert.deepEqual(set.rules[0].metaKeys, ["team"]);
});

Deno.test("compile warnings: conditions that can never hold or always hold", () => {
  const t = test(latent(1), 2);
  const set = compilePolicySet([
    file([
      rule("neg", all(t, not(t)), { source: at(2) }),
      rule("range", all(t, test(latent(1), 1, { op: "below" })), { source: at(3) }),
      rule("count", test(latent(1), 4, { pool: { kind: "count", window: 4, above: 1 } })),
      rule("below0", all(t, test(latent(2), 0, { op: "below" }))),
      rule("anyneg", any(t, not(t))),
      rule("fine", all(t, test(latent(1), 3, { op: "below" }))),
    ]),
  ], SIGNALS);
  assert.deepEqual(set.warnings.map((w) => [w.rule, w.code, w.source.line]), [
    ["neg", "never-fires", 20],
    ["range", "never-fires", 20],
    ["count", "never-fires", 10],
    ["below0", "never-fires", 20],
    ["anyneg", "always-holds", 21],
  ]);
  assert.match(set.warnings[1].reason, /above 2 and below 1/);
  assert.match(set.warnings[2].reason, /count over 4 tokens is never above 4/);
});

Deno.test("compile: a rule kept in the file but disabled still has its problems reported", () => {
  const p = only([file([rule("a", test(latent(99), 1), { enabled: false })])]);
  assert.equal(p.code, "latent-range");
});

Deno.test("compile: everyTime helper rules compile (smoke)", () => {
  const set = compilePolicySet([file([everyTime("a", test(latent(1), 1))])], SIGNALS);
  assert.equal(set.rules[0].def.throttle.suppress.kind, "none");
});

// Cases carried over from the v0 policy tests (src/core/policy_test.ts).

Deno.test("compile: watchedLatents are sorted numerically, per encoder, and copied", () => {
  const set = compilePolicySet([
    file([
      rule("a", test(latent(10), 1)),
      rule("b", test(latent(9), 1)),
      rule("c", test(latent(2), 1)),
      rule("d", test(latent(2, "res2"), 0)),
    ]),
  ], SIGNALS);
  const w = set.watchedLatents("res");
  assert.deepEqual([...w], [2, 9, 10]);
  w[0] = 99;
  assert.deepEqual([...set.watchedLatents("res")], [2, 9, 10]);
  assert.deepEqual([...set.watchedLatents("res2")], [2]);
});

Deno.test("compile: the last latent (dSae - 1) and the last probe score are accepted", () => {
  const set = compilePolicySet([
    file([rule("a", test(latent(31), 0)), rule("b", test(probe(1), 0))]),
  ], SIGNALS);
  assert.deepEqual([...set.watchedLatents("res")], [31]);
  assert.deepEqual([...set.watchedLatents("pr")], [1]);
});

Deno.test("compile warning: a steering rule throttled across requests", () => {
  const clamp = {
    kind: "steer" as const,
    steer: { kind: "clamp" as const, sae: "res", latent: 1, value: 0 },
  };
  const set = compilePolicySet([
    file([
      rule("per-tenant", test(latent(1), 1), {
        source: at(3),
        actions: [clamp],
        throttle: { suppress: { kind: "seconds", s: 60 }, dedupKey: "{tenant}" },
      }),
      rule("limited", test(latent(1), 1), {
        source: at(9),
        actions: [clamp],
        throttle: {
          suppress: { kind: "request" },
          dedupKey: "{request_id}",
          rateLimit: { alerts: 5, seconds: 60 },
        },
      }),
      rule("fine", test(latent(1), 1), { source: at(15), actions: [clamp] }),
    ]),
  ], SIGNALS);
  assert.deepEqual(set.warnings.map((w) => [w.code, w.source.line, w.rule]), [
    ["steer-throttled", 3, "per-tenant"],
    ["steer-throttled", 9, "limited"],
  ]);
  assert.match(set.warnings[0].reason, /dedups by "\{tenant\}"/);
});

Deno.test("compile: the per-latent index is sized by the latents read, not by d_sae (2^31 wide)", () => {
  const huge = new Map<string, SignalInfo>([["res", { kind: "sae", dSae: 2 ** 31 }]]);
  const top = 2 ** 31 - 1;
  const set = compilePolicySet([
    file([
      rule("a", test(latent(top), 1)),
      rule("b", test(latent(5), 1)),
      rule("c", all(test(latent(top), 2), test(latent(1_000_000_007), 0))),
    ]),
  ], huge);
  const before = Deno.memoryUsage().rss;
  const idx = set.index.get("res")!;
  const grew = Deno.memoryUsage().rss - before;
  // a dense [d_sae + 1] offsets array would be 8 GiB
  assert.ok(grew < 64 * 2 ** 20, `building the index took ${grew} bytes`);
  assert.equal(idx.offsets, null, "no dense array for a latent past 2^20");
  assert.ok(idx.slotKey.length <= 16, `a table for 3 latents, found ${idx.slotKey.length} slots`);
  assert.equal(idx.filter.length, 4096);
  assert.deepEqual([...idx.watched], [5, 1_000_000_007, top]);
  const entries = (l: number) => {
    const [from, to] = indexEntries(idx, l);
    const out: string[] = [];
    for (let e = from; e < to; e++) out.push(`${set.rules[idx.rule[e]].id}#${idx.test[e]}`);
    return out;
  };
  assert.deepEqual(entries(top), ["a#0", "c#0"], "rule order kept within a latent");
  assert.deepEqual(entries(5), ["b#0"]);
  assert.deepEqual(entries(1_000_000_007), ["c#1"]);
  assert.deepEqual(entries(6), []);
  assert.deepEqual(entries(0), []);

  // and the engine finds the rules of the top latent
  const engine = new PolicyEngine(set);
  const row = {
    indices: Uint32Array.from([5, 6, 1_000_000_007, top]),
    values: Float32Array.from([3, 9, 1, 3]),
  };
  const fired = engine.evaluate({
    ctx: { requestId: "r", model: "m" },
    position: 0,
    tokens: 1,
    latents: new Map([["res", [row]]]),
    firstRow: 0,
  });
  assert.deepEqual(fired.map((f) => f.rule.id).sort(), ["a", "b", "c"]);
});

Deno.test("compile: small latents get a dense index sized by the largest one read, not by d_sae", () => {
  const wide = new Map<string, SignalInfo>([["res", { kind: "sae", dSae: 2 ** 30 }]]);
  const set = compilePolicySet([
    file([
      rule("a", test(latent(10), 1)),
      rule("b", test(latent(3), 1)),
      rule("c", test(latent(10), 2)),
    ]),
  ], wide);
  const idx = set.index.get("res")!;
  assert.equal(idx.offsets?.length, 12, "latents 0..10, plus one");
  const ids = (l: number) => {
    const [from, to] = indexEntries(idx, l);
    return Array.from({ length: to - from }, (_, i) => set.rules[idx.rule[from + i]].id);
  };
  assert.deepEqual([ids(3), ids(10), ids(4), ids(11), ids(2 ** 29)], [
    ["b"],
    ["a", "c"],
    [],
    [],
    [],
  ]);
});
