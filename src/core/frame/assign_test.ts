import assert from "node:assert/strict";
const assertEquals = (a: unknown, b: unknown, msg?: string) => assert.deepEqual(a, b, msg);
import { assignPartitions } from "./assign.ts";

function counts(owners: (string | null)[]): Map<string | null, number> {
  const m = new Map<string | null, number>();
  for (const o of owners) m.set(o, (m.get(o) ?? 0) + 1);
  return m;
}

Deno.test("assignPartitions: every partition owned, counts differ by at most one", () => {
  for (const partitions of [1, 2, 7, 16, 64, 100]) {
    for (let n = 1; n <= 6; n++) {
      const members = Array.from({ length: n }, (_, i) => `sidecar-${i}`);
      const owners = assignPartitions(members, partitions);
      assertEquals(owners.length, partitions);
      assertEquals(owners.includes(null), false);
      const c = [...counts(owners).values()];
      const want = Math.min(n, partitions);
      assertEquals(c.length, want, `${n} members, ${partitions} partitions`);
      assertEquals(Math.max(...c) - Math.min(...c) <= 1, true, `${c}`);
    }
  }
});

Deno.test("assignPartitions: same answer whatever the order of the members", () => {
  const a = assignPartitions(["b", "c", "a"], 16);
  const b = assignPartitions(["a", "a", "b", "c"], 16);
  assertEquals(a, b);
});

Deno.test("assignPartitions: no members, no owners", () => {
  assertEquals(assignPartitions([], 3), [null, null, null]);
});

Deno.test("assignPartitions: a member joining or leaving moves few partitions", () => {
  let worst = 0;
  for (let trial = 0; trial < 50; trial++) {
    const members = [`m${trial}-a`, `m${trial}-b`, `m${trial}-c`];
    const before = assignPartitions(members, 16);
    const after = assignPartitions([...members, `m${trial}-d`], 16);
    const moved = before.filter((o, p) => after[p] !== o).length;
    worst = Math.max(worst, moved);
    // partitions that did not go to the newcomer stayed where they were, mostly
    const reshuffled = before.filter((o, p) => after[p] !== o && after[p] !== `m${trial}-d`).length;
    assertEquals(reshuffled <= 4, true, `trial ${trial}: ${reshuffled} moved between old members`);
  }
  // the newcomer takes 4 of 16; a full reshuffle would move ~12
  assertEquals(worst <= 8, true, `worst ${worst}`);
});

Deno.test("assignPartitions: rejects a partition count that is not a positive integer", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    let threw = false;
    try {
      assignPartitions(["a"], bad);
    } catch (e) {
      threw = e instanceof RangeError;
    }
    assertEquals(threw, true, String(bad));
  }
});
