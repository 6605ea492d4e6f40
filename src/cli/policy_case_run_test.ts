import assert from "node:assert/strict";
import { parseYamlSource } from "../config/yaml_source.ts";
import { compilePolicySet } from "../core/policy/compile.ts";
import { everyTime, file, latent, probe, SIGNALS, test } from "../core/policy/test_helpers.ts";
import type { Frame } from "../core/frame/format.ts";
import { caseRows, overrideFrame, runGivenCase } from "./policy_case_run.ts";
import { type CaseSignal, resolveGivenCase } from "./policy_cases.ts";

/** `signals` as a given-values case of a one-test file (positions come from this text). */
function source(signals: CaseSignal[], tokens?: number) {
  const text = `tests:\n  - signals:\n${
    signals.map((s) => `      - ${JSON.stringify(s)}\n`).join("")
  }`;
  return {
    src: parseYamlSource(text, "t.test.yaml"),
    at: ["tests", 0] as const,
    signals,
    ...(tokens !== undefined ? { tokens } : {}),
  };
}

// `low`: mean of probe pr score 1 over 2 tokens below -1; `hot`: latent 4 of res above 2
const SET = compilePolicySet([
  file([
    everyTime("low", test(probe(1), -1, { op: "below", pool: { kind: "mean", window: 2 } })),
    everyTime("hot", test(latent(4), 2)),
  ]),
], SIGNALS);

Deno.test("given values: probe scores of any sign, pooled and compared as the engine does", () => {
  const r = resolveGivenCase(
    source([
      { probe: "pr", score: 1, values: [0, -3, -1, 1] },
      { sae: "res", latent: 4, values: { 2: 2.5 } },
    ]),
    SIGNALS,
  );
  assert.deepEqual(r.issues, []);
  const firings = runGivenCase({ set: SET, signals: SIGNALS, case: r.case!, model: "m" });
  // mean over 2 of [0, -3, -1, 1]: 0, -1.5, -2, 0 → below -1 at 1 and 2
  assert.deepEqual(
    firings.map((f) => [f.rule.id, f.positions]),
    [["low", [1, 2]], ["hot", [2]]],
  );
  // the probe's rows hold every score (0 where not given); the SAE's only active latents
  const rows = caseRows(r.case!, SET, SIGNALS);
  assert.deepEqual([...rows.get("pr")![1].indices], [0, 1]);
  assert.deepEqual([...rows.get("pr")![1].values], [0, -3]);
  assert.deepEqual(rows.get("res")!.map((row) => [...row.indices]), [[], [], [4], []]);
});

Deno.test("given values: a negative SAE value and a probe score past its width are errors", () => {
  const r = resolveGivenCase(
    source([
      { probe: "pr", score: 2, values: [0, 1] }, //          line 3
      { sae: "res", latent: 4, values: [0, -0.5] }, //      line 4
      { sae: "res", label: "deception", values: [1, 1] }, // line 5: two latents carry it
    ]),
    SIGNALS,
  );
  assert.equal(r.case, undefined);
  assert.deepEqual(r.issues.map((i) => [i.line, i.reason]), [
    [3, "expected a score index in 0..1 (probe 'pr'), found 2"],
    [4, "expected a value ≥ 0 (SAE 'res' latent 4: SAE latents are 0 or positive), found -0.5"],
    [5, "latent label 'deception' of SAE 'res' is ambiguous: expected one latent, found 4, 5"],
  ]);
});

Deno.test("given values: only sparse values need a token count", () => {
  const sparse = [{ sae: "res", latent: 4, values: { 1: 3 } }];
  const none = resolveGivenCase(source(sparse), SIGNALS);
  assert.match(none.issues[0].reason, /expected 'tokens' .* found only sparse values/);
  const counted = resolveGivenCase(source(sparse, 3), SIGNALS);
  assert.deepEqual(counted.case?.values.get("res")?.get(4), [0, 3, 0]);
});

Deno.test("overrideFrame: tenant, model and metadata keys, on one request or all", () => {
  const frame = {
    requestId: "a",
    model: "m",
    tenant: "t",
    meta: { team: "x", env: "prod" },
  } as unknown as Frame;
  const all = overrideFrame(frame, { tenant: "red", model: "m2", meta: { team: "y" } });
  assert.deepEqual([all.tenant, all.model, all.meta], ["red", "m2", { team: "y", env: "prod" }]);
  assert.equal(overrideFrame(frame, { id: "b", tenant: "red" }), frame);
  assert.equal(overrideFrame(frame, { id: "a", tenant: "red" }).tenant, "red");
});
