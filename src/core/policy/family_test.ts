import assert from "node:assert/strict";
import type { SignalRef } from "./ast.ts";
import { compilePolicySet, PolicyCompileError, type SignalInfo } from "./compile.ts";
import { PolicyEngine } from "./engine.ts";
import { hydratePolicySet, policySetData } from "./transfer.ts";
import { all, everyTime, file, probe, sparse, test } from "./test_helpers.ts";
import type { SparseLatents } from "../sae.ts";

/**
 * SAE `res` of 8 latents whose decoder cosines with latent 2 are set by hand
 * (the engine never sees a decoder: only these numbers).
 */
const COS_WITH_2 = [0.1, -0.4, 1, 0.8, 0.5, 0.3, 0, 0.6];
const SIGNALS = new Map<string, SignalInfo>([
  ["res", {
    kind: "sae",
    dSae: 8,
    decoderCosines: (l) => {
      if (l !== 2) throw new Error(`asked for latent ${l}`);
      return COS_WITH_2;
    },
  }],
  ["pr", { kind: "probe", dSae: 1 }],
]);

const family = (
  members: number[] | { minCosine: number },
  combine: "sum" | "max" = "sum",
): SignalRef => ({ kind: "family", sae: "res", of: 2, members, combine });

function run(
  set: ReturnType<typeof compilePolicySet>,
  rows: SparseLatents[],
  probeRows?: number[],
) {
  const engine = new PolicyEngine(set);
  const latents = new Map([["res", rows]]);
  if (probeRows) latents.set("pr", probeRows.map((v) => sparse([[0, v]])));
  return engine.evaluate({
    ctx: { requestId: "r", model: "m" },
    position: 0,
    tokens: rows.length,
    latents,
    firstRow: 0,
  });
}

Deno.test("family: min_cosine picks members from the decoder, all watched, weights are the cosines", () => {
  const set = compilePolicySet(
    [file([everyTime("f", test(family({ minCosine: 0.5 }), 1))])],
    SIGNALS,
  );
  // cosine ≥ 0.5: latents 2 (1), 3 (0.8), 4 (0.5), 7 (0.6)
  assert.deepStrictEqual([...set.watchedLatents("res")], [2, 3, 4, 7]);
  assert.deepStrictEqual(set.rules[0].tests[0].family, {
    members: [2, 3, 4, 7],
    weights: [1, 0.8, 0.5, 0.6],
    combine: "sum",
  });
});

Deno.test("family: per token value is the sum (or max) of activation × cosine; a member alone triggers", () => {
  // token 0: only member 3 at 2 → 1.6 (latent 2 is silent: absorbed)
  // token 1: 2 at 1 and 4 at 2 → 1 + 1 = 2 (max: 1)
  // token 2: latent 5 (not a member) at 9 → 0
  // token 3: 7 at 1 → 0.6
  const rows = [sparse([[3, 2]]), sparse([[2, 1], [4, 2]]), sparse([[5, 9]]), sparse([[7, 1]])];
  const members = [2, 3, 4, 7];
  const sum = run(
    compilePolicySet([file([everyTime("f", test(family(members), 0.5))])], SIGNALS),
    rows,
  );
  assert.deepStrictEqual(sum[0].positions, [0, 1, 3]);
  assert.ok(Math.abs(sum[0].value - 1.6) < 1e-9, `${sum[0].value}`);
  const max = run(
    compilePolicySet([file([everyTime("f", test(family(members, "max"), 1.2))])], SIGNALS),
    rows,
  );
  assert.deepStrictEqual(max[0].positions, [0]); // 1.6; token 1 is max(1, 1) = 1
  // the single latent misses the absorbed token 0
  const single = run(
    compilePolicySet([
      file([everyTime("s", test({ kind: "latent", sae: "res", index: 2 }, 0.5))]),
    ], SIGNALS),
    rows,
  );
  assert.deepStrictEqual(single[0].positions, [1]);
});

Deno.test("family: pooled like any signal (mean over a window of combined values)", () => {
  const rows = [sparse([[3, 2]]), sparse([[2, 1], [4, 2]]), sparse([]), sparse([[7, 1]])];
  const set = compilePolicySet(
    [file([
      everyTime("f", test(family([2, 3, 4, 7]), 1.1, { pool: { kind: "mean", window: 2 } })),
    ])],
    SIGNALS,
  );
  // per token 1.6, 2, 0, 0.6 → means over 2: 1.6 (one token so far), 1.8, 1, 0.3
  const f = run(set, rows);
  assert.deepStrictEqual(f[0].positions, [0, 1]);
  assert.ok(Math.abs(f[0].value - 1.6) < 1e-9);
  assert.equal(f[0].signal.index, 2);
  assert.deepStrictEqual(f[0].signal.family?.members, [2, 3, 4, 7]);
});

Deno.test("family: with a probe in one 'all', both must hold; survives transfer to another thread", () => {
  const cond = all(test(probe(0), 1), test(family([2, 3]), 1));
  const set = compilePolicySet([file([everyTime("both", cond)])], SIGNALS);
  const again = hydratePolicySet(structuredClone(policySetData(set)), SIGNALS);
  for (const s of [set, again]) {
    // token 0: family 1.6, probe 0.5; token 1: family 0, probe 3; token 2: family 1.6, probe 2
    const f = run(s, [sparse([[3, 2]]), sparse([]), sparse([[3, 2]])], [0.5, 3, 2]);
    assert.deepStrictEqual(f[0].positions, [2]);
  }
});

Deno.test("family: a family and a plain test on the same latent are two signals", () => {
  const set = compilePolicySet(
    [file([
      everyTime(
        "x",
        all(test(family([2, 3]), 0.1), test({ kind: "latent", sae: "res", index: 2 }, 0.1)),
      ),
    ])],
    SIGNALS,
  );
  assert.equal(set.rules[0].tests.length, 2);
  // the latent alone is silent on token 0, so the 'all' holds only on token 1
  const f = run(set, [sparse([[3, 2]]), sparse([[2, 1]])]);
  assert.deepStrictEqual(f[0].positions, [1]);
  // and the hash tells apart families with other members
  const other = compilePolicySet([
    file([
      everyTime(
        "x",
        all(test(family([2, 4]), 0.1), test({ kind: "latent", sae: "res", index: 2 }, 0.1)),
      ),
    ]),
  ], SIGNALS);
  assert.notEqual(set.rules[0].hash, other.rules[0].hash);
});

Deno.test("family: problems at the test's line: no decoder, members against the concept, out of range", () => {
  const problems = (signal: SignalRef, signals: ReadonlyMap<string, SignalInfo> = SIGNALS) => {
    try {
      compilePolicySet([file([everyTime("f", test(signal, 1, { line: 7 }))])], signals);
    } catch (e) {
      assert.ok(e instanceof PolicyCompileError);
      return e.problems.map((p) => `${p.source.line} ${p.code}: ${p.reason}`);
    }
    assert.fail("expected a compile problem");
  };
  const bare = new Map<string, SignalInfo>([["res", { kind: "sae", dSae: 8 }]]);
  assert.match(
    problems(family([2, 3]), bare)[0],
    /^7 no-decoder: family of latent 2: expected SAE 'res' with its decoder loaded/,
  );
  assert.match(
    problems(family([2, 1, 6]))[0],
    /^7 family: .*cosine > 0\), found 1 \(cosine -0\.400\), 6 \(cosine 0\.000\)/,
  );
  assert.match(
    problems(family([2, 9]))[0],
    /^7 family: family of latent 2: expected members in 0\.\.7 .*found 9/,
  );
  assert.match(
    problems({ ...family([2]), of: 8 } as SignalRef)[0],
    /^7 latent-range: expected a latent index in 0\.\.7/,
  );
  assert.match(problems(family({ minCosine: 0 }))[0], /expected min_cosine in \(0, 1\], found 0/);
});
