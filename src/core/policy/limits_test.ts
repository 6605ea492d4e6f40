import assert from "node:assert/strict";
import { parsePolicyFileDef } from "../../config/policy_file.ts";
import type { Condition, MacroDef, PolicyFileDef } from "./ast.ts";
import {
  compilePolicySet,
  hydratePolicySet,
  PolicyCompileError,
  policySetData,
  type SignalInfo,
} from "./compile.ts";
import { DEFAULT_POLICY_LIMITS, policyLimits, PolicyLimitsError } from "./limits.ts";
import { all, any, at, file, latent, macro, not, rule, test } from "./test_helpers.ts";
import { macroChainYaml } from "./test_helpers.ts";

const RES = (dSae: number) => new Map<string, SignalInfo>([["res", { kind: "sae", dSae }]]);

function problems(
  files: PolicyFileDef[],
  signals = RES(64),
  limits = {},
): [string, number, string][] {
  try {
    compilePolicySet(files, signals, { limits });
  } catch (err) {
    if (!(err instanceof PolicyCompileError)) throw err;
    return err.problems.map((p) => [p.code, p.source.line, p.reason]);
  }
  return assert.fail("expected a PolicyCompileError");
}

/** `n` macros m0..m{n-1}: m_i = any(m_{i-1}, latent i), declared last first when `reversed`. */
function chain(n: number, reversed = false): MacroDef[] {
  const macros: MacroDef[] = [{ name: "m0", condition: test(latent(0), 1), source: at(1) }];
  for (let i = 1; i < n; i++) {
    macros.push({
      name: `m${i}`,
      condition: { kind: "any", of: [macro(`m${i - 1}`), test(latent(i), 1)], source: at(i + 1) },
      source: at(i + 1),
    });
  }
  return reversed ? macros.reverse() : macros;
}

Deno.test("limits: defaults are documented numbers; overrides must be positive integers", () => {
  assert.deepEqual({ ...DEFAULT_POLICY_LIMITS }, {
    fileBytes: 8388608,
    depth: 64,
    macros: 20000,
    listItems: 10000,
    latentIndex: 2147483648,
    conditionDepth: 256,
    conditionNodes: 1000000,
  });
  assert.equal(policyLimits({ macros: 5 }).macros, 5);
  assert.throws(() => policyLimits({ depth: 0 }), PolicyLimitsError);
  assert.throws(() => policyLimits({ macros: 1.5 }), /expected a positive integer, found 1.5/);
});

Deno.test("compile: a chain of 10,000 macros (declared either way round) compiles in linear time", () => {
  for (const reversed of [false, true]) {
    const t0 = performance.now();
    const set = compilePolicySet(
      [file([rule("r", macro("m9999"))], { macros: chain(10_000, reversed) })],
      RES(10_000),
    );
    const ms = performance.now() - t0;
    // nested any merged: one any of 10,000 tests, two levels deep
    const c = set.rules[0].condition;
    assert.equal(c.kind, "any");
    assert.equal(c.kind === "any" && c.of.length, 10_000);
    assert.equal(set.rules[0].tests.length, 10_000);
    assert.equal(set.warnings.length, 0);
    // the cubic resolver took minutes here; linear takes well under a second (bound generous for CI)
    assert.ok(ms < 5000, `compiled in ${ms.toFixed(0)} ms`);
  }
});

Deno.test("compile: the chain behaves like the any of its tests", () => {
  const set = compilePolicySet([file([rule("r", macro("m4"))], { macros: chain(5) })], RES(8));
  const read = (hot: number) => ({
    read: (t: number) => set.rules[0].tests[t].index === hot ? 2 : 0,
    witness: -1,
    witnessValue: 0,
  });
  for (let i = 0; i < 5; i++) assert.equal(set.rules[0].holds(read(i)), true, `latent ${i}`);
  assert.equal(set.rules[0].holds(read(7)), false);
});

Deno.test("compile: a macro loop 10,000 long is one error, not a stack overflow", () => {
  const macros = chain(10_000);
  macros[0] = { name: "m0", condition: macro("m9999", 5), source: at(1) };
  const found = problems([file([rule("r", macro("m9999"))], { macros })], RES(10_000));
  assert.equal(found.length, 1);
  assert.equal(found[0][0], "macro-cycle");
  assert.match(found[0][2], /^macro cycle: m0 → m9999 → m9998 → .* \(9991 more\) → .* → m0;/);
});

Deno.test("compile: more macros than the limit is one error at the first one past it", () => {
  const found = problems([file([rule("r", macro("m2"))], { macros: chain(4) })], RES(8), {
    macros: 3,
  });
  assert.deepEqual(found, [[
    "limit",
    4,
    "expected at most 3 macros across the policy files (limit macros), found 4",
  ]]);
});

Deno.test("compile: a doubling macro chain is refused by its size, before it is expanded", () => {
  // d_i = all(d_{i-1}, d_{i-1}): 2^60 tests if expanded
  const macros: MacroDef[] = [{ name: "d0", condition: test(latent(0), 1), source: at(1) }];
  for (let i = 1; i <= 60; i++) {
    macros.push({
      name: `d${i}`,
      condition: { kind: "all", of: [macro(`d${i - 1}`), not(macro(`d${i - 1}`))], source: at(i) },
      source: at(i + 1),
    });
  }
  const t0 = performance.now();
  const found = problems([file([rule("r", macro("d60"))], { macros })]);
  assert.ok(performance.now() - t0 < 2000);
  // the first macro past the limit is reported; those using it are not reported again
  assert.equal(found.length, 1);
  assert.equal(found[0][0], "limit");
  // sizes 3·2^i − 2: d18 is 786,430 nodes, d19 1,572,862, past the default 1,000,000
  assert.deepEqual(found[0].slice(0, 2), ["limit", 20]);
  assert.equal(
    found[0][2],
    "macro 'd19': expected at most 1000000 conditions with macros expanded (limit " +
      "conditionNodes, all rules together), found 1572862",
  );
});

Deno.test("compile: condition nodes across rules are bounded by conditionNodes", () => {
  const rules = [0, 1, 2].map((i) => rule(`r${i}`, macro("m9", 30 + i)));
  const found = problems([file(rules, { macros: chain(10) })], RES(16), {
    conditionNodes: 45,
  });
  // m9 expands to at most 19 nodes: the third rule goes past 45
  assert.deepEqual(found.map(([code, line]) => [code, line]), [["limit", 32]]);
  assert.match(
    found[0][2],
    /^when: expected at most 45 conditions with macros expanded \(limit conditionNodes, all rules together\), found more$/,
  );
});

Deno.test("compile: a deep condition built in code is an error, not a stack overflow", () => {
  let c: Condition = test(latent(1), 1);
  for (let i = 0; i < 50_000; i++) c = not(c);
  const found = problems([file([rule("r", c)])]);
  assert.equal(found.length, 1);
  assert.equal(found[0][0], "limit");
  assert.match(found[0][2], /^when: expected a condition at most 256 levels deep .* found 50001$/);
});

Deno.test("compile: latent indices past the limit and long lists are errors", () => {
  const bigList = Array.from({ length: 11 }, (_, i) => i);
  const found = problems(
    [
      file([
        rule("a", test(latent(2 ** 40), 1, { line: 11 })),
        rule("b", test({ kind: "latents", sae: "res", indices: bigList }, 1, { line: 12 })),
        rule("c", all(test(latent(1), 1), any(test(latent(2), 1)))),
      ], { lists: [{ name: "big", items: bigList, source: at(40) }] }),
    ],
    RES(2 ** 41),
    { listItems: 10 },
  );
  assert.deepEqual(found.map(([code, line]) => [code, line]), [
    ["limit", 40],
    ["latent-index", 11],
    ["limit", 12],
  ]);
  assert.match(
    found[1][2],
    /expected a latent index below 2147483648 \(limit latentIndex\), found 1099511627776/,
  );
});

Deno.test("compile: a set sent as data and hydrated evaluates the same", () => {
  const def = parsePolicyFileDef(macroChainYaml(50), "chain.yaml");
  const set = compilePolicySet([def], RES(64));
  const copy = hydratePolicySet(structuredClone(policySetData(set)), RES(64));
  assert.equal(copy.version, set.version);
  assert.deepEqual(copy.watchedLatents("res"), set.watchedLatents("res"));
  const env = { read: (t: number) => (t === 17 ? 3 : 0), witness: -1, witnessValue: 0 };
  assert.equal(copy.rules[0].holds({ ...env }), true);
  assert.equal(copy.rules[0].holds({ ...env, read: () => 0 }), false);
});
