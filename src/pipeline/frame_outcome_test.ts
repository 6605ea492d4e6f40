import assert from "node:assert/strict";
import type { Firing } from "../core/policy/engine.ts";
import { mergeFirings, NOTHING } from "./frame_outcome.ts";

/** A firing of the rule at `index` (only what the merge reads). */
const at = (index: number): Firing => ({ rule: { index } } as unknown as Firing);
const indices = (fs: readonly Firing[]) => fs.map((f) => f.rule.index);

Deno.test("mergeFirings: two lists in rule order make one in rule order", () => {
  const [f0, f1, f2, f3, f4, f7] = [0, 1, 2, 3, 4, 7].map(at);
  const merged = mergeFirings([f0, f3, f4], [f1, f2, f7]);
  assert.deepEqual(indices(merged), [0, 1, 2, 3, 4, 7]);
  assert.ok([f0, f1, f2, f3, f4, f7].every((f, i) => merged[i] === f)); // the same objects
  assert.deepEqual(indices(mergeFirings([at(5)], [at(1), at(2)])), [1, 2, 5]);
  assert.deepEqual(indices(mergeFirings([at(1), at(2)], [at(5)])), [1, 2, 5]);
});

Deno.test("mergeFirings: an empty side returns the other list itself", () => {
  const a = [at(1), at(2)];
  assert.equal(mergeFirings(a, []), a);
  assert.equal(mergeFirings([], a), a);
  const none: Firing[] = [];
  assert.equal(mergeFirings(none, []), none);
});

Deno.test("NOTHING: continue, no firings, alerts, commands or skips; frozen through", () => {
  assert.equal(NOTHING.verdict, "continue");
  for (const list of [NOTHING.firings, NOTHING.alerts, NOTHING.commands, NOTHING.skipped]) {
    assert.equal(list.length, 0);
    assert.ok(Object.isFrozen(list));
  }
  assert.ok(Object.isFrozen(NOTHING));
});
