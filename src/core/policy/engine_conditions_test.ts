import assert from "node:assert/strict";
import type { Condition, RuleDef } from "./ast.ts";
import { compilePolicySet, type SignalInfo } from "./compile.ts";
import { PolicyEngine, type TokenBatch } from "./engine.ts";
import type { SparseLatents } from "../sae.ts";
import { all, any, at, everyTime, file, latent, rule, sparse, test } from "./test_helpers.ts";

const E = 10; // "e-mail address"
const C = 20; // "credential"
const SIGNALS = new Map<string, SignalInfo>([
  ["res12", {
    kind: "sae",
    dSae: 64,
    labels: new Map([[E, "e-mail address"], [C, "credential"]]),
  }],
]);

const named = (t: Condition, name: string): Condition => ({ ...t, name } as Condition);

/** e-mail latent pooled max over 8 tokens above 5, then the credential latent on the token above 3. */
function emailThenCredential(over: Partial<RuleDef> = {}): RuleDef {
  return rule(
    "leak",
    all(
      named(test(latent(E, "res12"), 5, { pool: { kind: "max", window: 8 } }), "email"),
      named(test(latent(C, "res12"), 3), "credential"),
    ),
    {
      description: "{label} at {value}: e-mail {cond.email.value} ({cond.email.pool} above " +
        "{cond.email.threshold}), credential {cond.credential.value} ({cond.credential.held})",
      ...over,
    },
  );
}

function batch(position: number, rows: SparseLatents[], text?: string[]): TokenBatch {
  return {
    ctx: { requestId: "r", model: "m" },
    position,
    tokens: rows.length,
    latents: new Map([["res12", rows]]),
    firstRow: 0,
    ...(text ? { tokenText: text } : {}),
  };
}

Deno.test("engine: the e-mail-then-credential rule leads with the credential latent that completed it", () => {
  const set = compilePolicySet([file([emailThenCredential()])], SIGNALS);
  assert.deepEqual(set.rules[0].conditions.map((c) => c.name), ["email", "credential"]);
  const engine = new PolicyEngine(set);
  // e-mail at token 1 (5.99), credential at token 4 (3.5): the rule holds first at 4
  const rows = [
    sparse([]),
    sparse([[E, 5.99]]),
    sparse([]),
    sparse([[7, 1]]),
    sparse([[C, 3.5]]),
  ];
  const fs = engine.evaluate(batch(0, rows, ["a", "@", "b", "c", "hunter2024"]));
  assert.equal(fs.length, 1);
  const f = fs[0];
  assert.deepEqual(f.positions, [4]);
  // sparse() stores float32: the values as the engine reads them
  const email = Math.fround(5.99), cred = Math.fround(3.5);
  assert.deepEqual(f.signal, { encoder: "res12", index: C, label: "credential", kind: "latent" });
  assert.equal(f.value, cred);
  assert.equal(f.completedBy, 1);
  assert.deepEqual(f.conditionValues, [email, cred]);
  assert.equal(
    f.description,
    "credential at 3.5: e-mail 5.99 (max 8 above 5), credential 3.5 (true)",
  );
});

Deno.test("engine: conditions rising together lead by presence, then window, then file order", () => {
  const rules = [
    everyTime(
      "window",
      all(
        named(test(latent(E, "res12"), 5, { pool: { kind: "max", window: 8 } }), "email"),
        named(test(latent(C, "res12"), 3, { pool: { kind: "max", window: 2 } }), "cred"),
      ),
    ),
    everyTime(
      "order",
      all(named(test(latent(E, "res12"), 5), "a"), named(test(latent(C, "res12"), 3), "b")),
    ),
  ];
  const set = compilePolicySet([file(rules)], SIGNALS);
  const engine = new PolicyEngine(set);
  const lead = (rows: SparseLatents[], position: number) =>
    engine.evaluate(batch(position, rows)).map((f) =>
      `${f.rule.id}:${f.rule.conditions[f.completedBy].name}`
    );
  // token 0: both rise together and are present: the shorter window (cred, 2) leads; same
  // windows: file order (a)
  assert.deepEqual(lead([sparse([[E, 6], [C, 4]])], 0), ["window:cred", "order:a"]);
  // token 1: only the e-mail latent is present, both still hold (max windows), none rose:
  // the present one leads
  assert.deepEqual(lead([sparse([[E, 6]])], 1), ["window:email"]);
  // token 2: only the credential is present
  assert.deepEqual(lead([sparse([[C, 4]])], 2), ["window:cred"]);
});

Deno.test("engine: the condition that rose leads, whatever its window", () => {
  const set = compilePolicySet([
    file([everyTime(
      "rose",
      all(
        named(test(latent(C, "res12"), 3, { pool: { kind: "max", window: 4 } }), "cmax"),
        named(test(latent(E, "res12"), 1, { pool: { kind: "token" } }), "etok"),
      ),
    )]),
  ], SIGNALS);
  const engine = new PolicyEngine(set);
  // token 0: the e-mail latent alone (the credential's window is empty): no firing
  assert.equal(engine.evaluate(batch(0, [sparse([[E, 2]])])).length, 0);
  // token 1: both present; etok held at 0 already, cmax rose: cmax leads though etok is per token
  const fs = engine.evaluate(batch(1, [sparse([[E, 2], [C, 4]])]));
  assert.equal(fs[0].rule.conditions[fs[0].completedBy].name, "cmax");
  assert.equal(fs[0].value, 4);
  assert.deepEqual(fs[0].conditionValues, [4, 2]);
});

Deno.test("engine: any(...) leads with the branch that holds; guards never lead", () => {
  const set = compilePolicySet([
    file([
      everyTime(
        "either",
        any(
          named(test(latent(E, "res12"), 5), "email"),
          all(
            named(test(latent(C, "res12"), 3), "credential"),
            named(test(latent(7, "res12"), 1, { op: "below" }), "quiet"),
          ),
        ),
      ),
    ]),
  ], SIGNALS);
  const engine = new PolicyEngine(set);
  // the e-mail latent is present but below 5: the credential branch holds
  const fs = engine.evaluate(batch(0, [sparse([[E, 2], [C, 4]])]));
  assert.equal(fs[0].rule.conditions[fs[0].completedBy].name, "credential");
  assert.deepEqual(fs[0].conditionValues, [Math.fround(2), 4, 0]);
  assert.equal(fs[0].rule.conditions[2].source.line, at(10).line);
});
