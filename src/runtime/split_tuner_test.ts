import assert from "node:assert/strict";
import { type Split, SplitTuner } from "./split_tuner.ts";

/** Runs a size's calls through the tuner with the given time per way (one outlier allowed). */
function drive(tuner: SplitTuner, key: number, ms: Record<Split, number>, calls: number): Split[] {
  const ways: Split[] = [];
  for (let i = 0; i < calls; i++) {
    const way = tuner.choose(key);
    ways.push(way);
    // the third timed split call is slow (a hand-off that waited): the median ignores it
    const outlier = way === "split" && ways.filter((w) => w === "split").length === 5 ? 10 : 0;
    if (tuner.tuning(key)) tuner.record(key, way, ms[way] + outlier);
  }
  return ways;
}

Deno.test("split tuner: alternates through warm-up and samples, then keeps the faster median", () => {
  const tuner = new SplitTuner({ warmup: 2, samples: 5 });
  const ways = drive(tuner, 1, { one: 0.9, split: 0.7 }, 20);
  // 2 warm-up and 5 timed calls each way, alternating, then the choice
  assert.deepEqual(ways.slice(0, 14), Array(7).fill(["one", "split"]).flat());
  assert.deepEqual(ways.slice(14), Array(6).fill("split"));
  assert.equal(tuner.chosen(1), "split");
  assert.equal(tuner.tuning(1), false);
});

Deno.test("split tuner: one thread wins where splitting is slower, each size on its own", () => {
  const tuner = new SplitTuner({ warmup: 0, samples: 3 });
  drive(tuner, 1, { one: 0.2, split: 0.3 }, 6);
  drive(tuner, 2, { one: 0.5, split: 0.3 }, 6);
  assert.equal(tuner.chosen(1), "one");
  assert.equal(tuner.chosen(2), "split");
});

Deno.test("split tuner: warm-up times are not counted", () => {
  const tuner = new SplitTuner({ warmup: 1, samples: 1 });
  // the warm-up calls say split is far faster; the timed ones say the opposite
  tuner.record(3, tuner.choose(3), 5);
  tuner.record(3, tuner.choose(3), 0.1);
  assert.equal(tuner.chosen(3), undefined);
  tuner.record(3, tuner.choose(3), 0.2);
  tuner.record(3, tuner.choose(3), 0.4);
  assert.equal(tuner.chosen(3), "one");
});

Deno.test("split tuner: a size is timed again after recheckEvery calls, and may change its way", () => {
  const tuner = new SplitTuner({ warmup: 0, samples: 3, recheckEvery: 10 });
  drive(tuner, 1, { one: 0.5, split: 0.6 }, 6); // a trial that met a busy second core
  assert.equal(tuner.chosen(1), "one");
  const kept = drive(tuner, 1, { one: 0.5, split: 0.3 }, 10);
  assert.deepEqual(kept, Array(10).fill("one"), "the choice holds for recheckEvery calls");
  assert.equal(tuner.tuning(1), false);
  const again = drive(tuner, 1, { one: 0.5, split: 0.3 }, 8);
  assert.deepEqual(again.slice(0, 6), Array(3).fill(["one", "split"]).flat(), "a new trial");
  assert.equal(tuner.chosen(1), "split");
  assert.deepEqual(again.slice(6), ["split", "split"]);
});

Deno.test("split tuner: sizes past maxKeys run on one thread, untimed", () => {
  const tuner = new SplitTuner({ maxKeys: 2 });
  tuner.choose(1);
  tuner.choose(2);
  assert.equal(tuner.choose(3), "one");
  assert.equal(tuner.tuning(3), false);
  assert.throws(() => new SplitTuner({ samples: 0 }), RangeError);
  assert.throws(() => new SplitTuner({ recheckEvery: 0 }), RangeError);
});
