import assert from "node:assert/strict";
import { Rng } from "./random.ts";
import { RecencyMap } from "./recency_map.ts";
import { childJson } from "../../tests/helpers/child_deno.ts";

/** The reference: a `Map` re-inserted on every use keeps the same order. */
class ReinsertedMap<K, V> {
  readonly map = new Map<K, V>();
  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
  }
  use(k: K): V | undefined {
    if (!this.map.has(k)) return undefined;
    const v = this.map.get(k)!;
    this.set(k, v);
    return v;
  }
}

Deno.test("recency map: random uses, sets and deletes keep the order a re-inserted Map keeps", () => {
  const rng = new Rng(5);
  const ours = new RecencyMap<string, number>();
  const ref = new ReinsertedMap<string, number>();
  const key = () => `k${Math.floor(rng.uniform() * 40)}`;
  for (let step = 0; step < 20_000; step++) {
    const op = rng.uniform();
    const k = key();
    if (op < 0.35) {
      ours.set(k, step);
      ref.set(k, step);
    } else if (op < 0.7) {
      assert.equal(ours.use(k), ref.use(k));
    } else if (op < 0.85) {
      assert.equal(ours.delete(k), ref.map.delete(k));
    } else if (op < 0.95) {
      assert.equal(ours.get(k), ref.map.get(k));
      assert.equal(ours.has(k), ref.map.has(k));
    } else {
      // delete every third key while iterating, in both
      const seen: string[] = [];
      let i = 0;
      for (const [id] of ours) {
        seen.push(id);
        if (i++ % 3 === 0) ours.delete(id);
      }
      i = 0;
      const refSeen: string[] = [];
      for (const id of ref.map.keys()) {
        refSeen.push(id);
        if (i++ % 3 === 0) ref.map.delete(id);
      }
      assert.deepEqual(seen, refSeen, `step ${step}`);
    }
    assert.equal(ours.size, ref.map.size);
    assert.equal(ours.oldest(), ref.map.keys().next().value);
  }
  assert.deepEqual([...ours.entries()], [...ref.map.entries()]);
  assert.deepEqual([...ours.values()], [...ref.map.values()]);
});

Deno.test("recency map: deleting the next entry, or every entry, while iterating", () => {
  const m = new RecencyMap<number, string>();
  for (let i = 0; i < 6; i++) m.set(i, `v${i}`);
  const seen: number[] = [];
  for (const k of m.keys()) {
    seen.push(k);
    m.delete(k + 1); // the entry after the current one goes: it is not visited
  }
  assert.deepEqual(seen, [0, 2, 4]);
  assert.deepEqual([...m.keys()], [0, 2, 4]);
  for (const k of m.keys()) m.delete(k);
  assert.equal(m.size, 0);
  assert.equal(m.oldest(), undefined);
  m.set(9, "again"); // an emptied map takes new keys
  assert.deepEqual([...m], [[9, "again"]]);
});

Deno.test("recency map: a use allocates nothing in a long-lived map (no table rebuilt)", async () => {
  // run in a child with a young generation too large to collect during the loop, so any
  // growth of the old generation is the map's own allocation
  const perUse = await childJson<{ recency: number; reinserted: number }>(
    `import v8 from "node:v8";
import { RecencyMap } from "${new URL("./recency_map.ts", import.meta.url).href}";
const oldUsed = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === "old_space").space_used_size;
const ids = Array.from({ length: 64 }, (_, i) => "req-" + i);
const make = (kind) => {
  const m = kind === "recency" ? new RecencyMap() : new Map();
  for (const id of ids) m.set(id, { seen: 0 });
  return m;
};
const maps = { recency: make("recency"), reinserted: make("map") };
globalThis.gc(); globalThis.gc(); // both maps (and their tables) now in the old generation
const uses = (kind, m, n) => {
  for (let i = 0; i < n; i++) {
    const id = ids[i & 63];
    if (kind === "recency") m.use(id).seen++;
    else { const v = m.get(id); m.delete(id); m.set(id, v); v.seen++; }
  }
};
// compiled first: the optimizing compiler's own objects (feedback, code) go to the old
// generation too, at times a loaded machine decides
for (const [kind, m] of Object.entries(maps)) uses(kind, m, 200_000);
const out = {};
for (const [kind, m] of Object.entries(maps)) {
  const before = oldUsed();
  uses(kind, m, 256_000);
  out[kind] = (oldUsed() - before) / 256_000;
}
console.log(JSON.stringify(out));`,
    "--expose-gc,--min-semi-space-size=64,--max-semi-space-size=64",
  );
  // the re-inserted Map rebuilds a 64-entry table every 64 uses (tens of bytes per use);
  // the recency map moves an entry
  assert.ok(perUse.reinserted > 16, `re-inserted Map: ${perUse.reinserted} B per use`);
  assert.ok(perUse.recency < 1, `recency map: ${perUse.recency} B per use`);
});
