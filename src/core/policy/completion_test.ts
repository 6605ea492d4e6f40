import assert from "node:assert/strict";
import { compilePolicySet } from "./compile.ts";
import { completingLeaf, leafTable, MAX_TRACKED_LEAVES } from "./completion.ts";
import { all, any, file, latent, not, probe, rule, SIGNALS, test } from "./test_helpers.ts";
import type { Condition } from "./ast.ts";

const compiled = (c: Condition) => compilePolicySet([file([rule("r", c)])], SIGNALS).rules[0];
const scratch = new Uint8Array(64);

Deno.test("completingLeaf: rose first, then present, then shortest window, then rule order", () => {
  // leaves: 0 res:1 max 8 above 5, 1 res:2 token above 3, 2 probe 0 mean 4 above 0.5
  const r = compiled(all(
    test(latent(1), 5, { pool: { kind: "max", window: 8 } }),
    test(latent(2), 3),
    test(probe(0), 0.5, { pool: { kind: "mean", window: 4 } }),
  ));
  const t = leafTable(r);
  assert.equal(t.tracked, true);
  const values = [6, 4, 0.9];
  const pick = (before: number, present: number[]) =>
    completingLeaf(r, t, { values, before, present: Uint8Array.from(present), scratch });
  assert.equal(pick(0b101, [0, 1, 1]), 1); // only leaf 1 rose
  assert.equal(pick(0b001, [0, 1, 1]), 1); // 1 and 2 rose, both present: token (1) < mean 4
  assert.equal(pick(0b001, [0, 0, 1]), 2); // 1 and 2 rose, only the probe present
  assert.equal(pick(0b111, [1, 0, 0]), 0); // none rose: the present one
  assert.equal(pick(0b111, [0, 0, 0]), 1); // none rose, none present: shortest window
  assert.equal(pick(-1, [1, 1, 1]), 1); // untracked: present, then window
});

Deno.test("completingLeaf: only the any branch that holds; guards never lead; guard-only falls back", () => {
  const r = compiled(any(
    all(test(latent(1), 5), test(latent(3), 1, { op: "below" })),
    test(latent(2), 3),
    not(test(latent(4), 2)),
  ));
  const t = leafTable(r);
  const present = Uint8Array.of(1, 1, 1, 1);
  // leaf order: res:1 above 5, res:3 below 1, res:2 above 3, res:4 above 2 (under not)
  // branch 1 fails (res:3 is 2, not below 1), branch 2 holds: res:2 leads though res:1 is high
  assert.equal(completingLeaf(r, t, { values: [6, 2, 4, 9], before: 0, present, scratch }), 2);
  // only the guard holds (res:4 low): the first condition on a trigger signal leads
  assert.equal(completingLeaf(r, t, { values: [0, 2, 0, 0], before: 0, present, scratch }), 0);
});

Deno.test("leafTable: rules of more than 31 conditions are not tracked", () => {
  const many = compiled(any(
    ...Array.from({ length: MAX_TRACKED_LEAVES + 1 }, (_, i) => test(latent(i), 1)),
  ));
  assert.equal(leafTable(many).n, 32);
  assert.equal(leafTable(many).tracked, false);
  assert.equal(leafTable(compiled(test(latent(1), 1))).tracked, false);
});
