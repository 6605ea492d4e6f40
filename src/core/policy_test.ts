import assert from "node:assert/strict";
import {
  compilePolicies,
  evaluateToken,
  PolicyCompileError,
  type PolicyRule,
  type Severity,
} from "./policy.ts";
import type { SparseLatents } from "./sae.ts";

function rule(
  id: string,
  latent: number,
  above: number,
  opts: { sae?: string; severity?: Severity; line?: number; file?: string } = {},
): PolicyRule {
  return {
    id,
    title: `rule ${id}`,
    severity: opts.severity ?? "high",
    sae: opts.sae ?? "demo-res",
    latent,
    above,
    source: { file: opts.file ?? "p.yaml", line: opts.line ?? 1 },
  };
}

function sparse(pairs: [number, number][]): SparseLatents {
  return {
    indices: Uint32Array.from(pairs.map(([i]) => i)),
    values: Float32Array.from(pairs.map(([, v]) => v)),
  };
}

const SAES = new Map([["demo-res", { dSae: 16 }], ["other", { dSae: 4 }]]);

/** The PolicyCompileError `fn` throws (fails the test otherwise). */
function compileError(fn: () => unknown): PolicyCompileError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PolicyCompileError) return err;
    throw err;
  }
  assert.fail("expected a PolicyCompileError, none was thrown");
}

Deno.test("compilePolicies: indexes rules by SAE and latent", () => {
  const a = rule("a", 3, 1);
  const b = rule("b", 0, 2);
  const c = rule("c", 3, 5);
  const d = rule("d", 2, 0, { sae: "other" });
  const p = compilePolicies([a, b, c, d], SAES);
  assert.deepEqual(p.rules, [a, b, c, d]);
  assert.deepEqual(p.index.get("demo-res")?.get(3), [a, c]);
  assert.deepEqual(p.index.get("demo-res")?.get(0), [b]);
  assert.equal(p.index.get("demo-res")?.get(1), undefined);
  assert.deepEqual(p.index.get("other")?.get(2), [d]);
  assert.deepEqual([...p.watchedLatents("demo-res")], [0, 3]);
  assert.deepEqual([...p.watchedLatents("other")], [2]);
  assert.deepEqual([...p.watchedLatents("unknown")], []);
});

Deno.test("compilePolicies: watchedLatents are sorted numerically and copied", () => {
  const p = compilePolicies([rule("a", 10, 1), rule("b", 9, 1), rule("c", 2, 1)], SAES);
  const w = p.watchedLatents("demo-res");
  assert.deepEqual([...w], [2, 9, 10]);
  w[0] = 99;
  assert.deepEqual([...p.watchedLatents("demo-res")], [2, 9, 10]);
});

Deno.test("compilePolicies: lists every problem with file:line", () => {
  const err = compileError(() =>
    compilePolicies([
      rule("dup", 0, 1, { line: 3 }),
      rule("dup", 1, 1, { line: 9, file: "q.yaml" }),
      rule("unknown-sae", 0, 1, { sae: "nope", line: 15 }),
      rule("too-far", 16, 1, { line: 21 }),
      rule("negative", 1, -0.5, { line: 27 }),
    ], SAES)
  );
  assert.ok(err instanceof TypeError);
  assert.deepEqual(err.problems.map((p) => [p.rule.id, p.field]), [
    ["dup", "id"],
    ["unknown-sae", "sae"],
    ["too-far", "latent"],
    ["negative", "above"],
  ]);
  assert.equal(
    err.message,
    [
      "q.yaml:9: duplicate rule id 'dup': expected ids to be unique, found it already defined at p.yaml:3",
      "p.yaml:15: rule 'unknown-sae': unknown SAE 'nope'; expected one the monitor loads (demo-res, other)",
      "p.yaml:21: rule 'too-far': expected a latent index in 0..15 (SAE 'demo-res' has d_sae 16), found 16",
      "p.yaml:27: rule 'negative': expected a threshold ≥ 0, found -0.5; a latent that is not " +
      "active reads as 0, so a negative threshold would fire on every token",
    ].join("\n"),
  );
});

Deno.test("compilePolicies: the last latent (dSae - 1) is accepted, NaN thresholds are not", () => {
  assert.doesNotThrow(() => compilePolicies([rule("a", 15, 0)], SAES));
  const err = compileError(() => compilePolicies([rule("a", 1, NaN)], SAES));
  assert.equal(err.problems[0].field, "above");
});

Deno.test("evaluateToken: fires when strictly above the threshold", () => {
  const a = rule("a", 0, 2);
  const b = rule("b", 1, 2);
  const p = compilePolicies([a, b], SAES);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[0, 2.5], [1, 1.5]])), [
    { rule: a, latent: 0, value: 2.5 },
  ]);
});

Deno.test("evaluateToken: a value equal to the threshold does not fire", () => {
  const p = compilePolicies([rule("a", 0, 2), rule("z", 5, 0)], SAES);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[0, 2], [5, 0]])), []);
});

Deno.test("evaluateToken: a rule on an inactive latent never fires, even at threshold 0", () => {
  const p = compilePolicies([rule("a", 4, 0)], SAES);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[0, 100], [3, 7], [5, 9]])), []);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([])), []);
});

Deno.test("evaluateToken: several rules on one latent, in latent then rule order", () => {
  const low = rule("low", 7, 1, { severity: "low" });
  const high = rule("high", 7, 3);
  const first = rule("first", 2, 0);
  const p = compilePolicies([low, high, first], SAES);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[2, 0.5], [7, 4]])), [
    { rule: first, latent: 2, value: 0.5 },
    { rule: low, latent: 7, value: 4 },
    { rule: high, latent: 7, value: 4 },
  ]);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[7, 2]])), [
    { rule: low, latent: 7, value: 2 },
  ]);
});

Deno.test("evaluateToken: rules of another SAE are not looked at", () => {
  const p = compilePolicies([rule("a", 1, 0, { sae: "other" })], SAES);
  assert.deepEqual(evaluateToken(p, "demo-res", sparse([[1, 5]])), []);
  assert.equal(evaluateToken(p, "other", sparse([[1, 5]])).length, 1);
  assert.deepEqual(evaluateToken(p, "unknown", sparse([[1, 5]])), []);
});

Deno.test("evaluateToken: many active latents (search path) gives the same matches as a walk", () => {
  const big = new Map([["demo-res", { dSae: 4096 }]]);
  const rules = [
    rule("a", 5, 1),
    rule("b", 1000, 0.5),
    rule("c", 4095, 2),
    rule("d", 77, 0),
    rule("e", 1029, 1),
  ];
  const p = compilePolicies(rules, big);
  // 65 active latents (a TopK token): 5 watched latents × 8 < 65 takes the search path.
  const pairs: [number, number][] = [];
  for (let i = 0; i < 64; i++) pairs.push([i * 64 + 5, 0.1 * i]);
  pairs.push([4095, 3]);
  pairs.sort((x, y) => x[0] - y[0]);
  const active = new Map(pairs);
  const expected = rules
    .filter((r) => (active.get(r.latent) ?? 0) > r.above)
    .sort((x, y) => x.latent - y.latent)
    .map((r) => ({ rule: r, latent: r.latent, value: Math.fround(active.get(r.latent)!) }));
  const got = evaluateToken(p, "demo-res", sparse(pairs));
  assert.deepEqual(got, expected);
  assert.deepEqual(got.map((m) => m.rule.id), ["e", "c"]);
  // And the walk path on a short token agrees.
  assert.deepEqual(
    evaluateToken(p, "demo-res", sparse([[5, 1.5], [77, 0.25]])).map((m) => m.rule.id),
    [
      "a",
      "d",
    ],
  );
});

Deno.test("probe rules: negative thresholds allowed on dense probes, kinds must match", () => {
  const encoders = new Map([["demo-res", { dSae: 16 }], ["lie", { dSae: 1, dense: true }]]);
  const probeRule = { ...rule("lie-low", 0, -0.5, { sae: "lie" }), signal: "probe" as const };
  const p = compilePolicies([probeRule], encoders);
  // a probe reports every score: −0.2 > −0.5 fires, −0.7 does not
  assert.deepEqual(evaluateToken(p, "lie", sparse([[0, -0.2]])).map((m) => m.rule.id), ["lie-low"]);
  assert.deepEqual(evaluateToken(p, "lie", sparse([[0, -0.7]])), []);
  const err = compileError(() =>
    compilePolicies([
      { ...rule("as-sae", 0, 1, { sae: "lie" }) },
      { ...rule("as-probe", 0, 1), signal: "probe" as const },
    ], encoders)
  );
  assert.deepEqual(err.problems.map((x) => x.reason), [
    "rule 'as-sae': expected an SAE id, found probe 'lie' (use 'probe:')",
    "rule 'as-probe': expected a probe id, found SAE 'demo-res' (use 'sae:' and 'latent:')",
  ]);
});
