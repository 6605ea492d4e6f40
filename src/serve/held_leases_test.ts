import assert from "node:assert/strict";
import type { LeaseStore } from "../bus/leases.ts";
import { delayedStore } from "../../tests/helpers/lease_store.ts";
import { memoryLeases } from "../../tests/helpers/memory_leases.ts";
import { type Observed, observed } from "../../tests/helpers/observed.ts";
import { HeldLeases, type ReleaseReason, removeOurs } from "./held_leases.ts";

const OURS = "a#n1";

interface Held extends Observed {
  leases: HeldLeases;
  /** Callbacks in order (`+3`, `-3:lost`). */
  events: string[];
}

function held(store: LeaseStore, onRelease?: (p: number, why: ReleaseReason) => void): Held {
  const events: string[] = [];
  const o = observed();
  const leases = new HeldLeases({
    ...o,
    store,
    member: "a",
    value: OURS,
    onAcquire: (p) => void events.push(`+${p}`),
    onRelease: onRelease ?? ((p, why) => void events.push(`-${p}:${why}`)),
  });
  return { ...o, leases, events };
}

Deno.test("held leases: a partition held and given up is counted, logged and told", async () => {
  const store = memoryLeases();
  const h = held(store);
  await h.leases.hold(3, 1, { free_for_ms: 120, adopted_from: "b" });
  await h.leases.hold(5, 2, { free_for_ms: 0, previous: "c" });
  assert.deepEqual(h.leases.entries(), [[3, 1], [5, 2]]);
  assert.deepEqual([h.leases.size, h.leases.has(3), h.leases.has(4)], [2, true, false]);
  assert.equal(h.telemetry.value("latentwatch.partitions.owned"), 2);
  assert.equal(h.telemetry.value("latentwatch.partition.owned", { partition: "3" }), 1);

  h.leases.release(3, "rebalance");
  h.leases.release(5, "lost");
  h.leases.release(5, "lost"); // not held any more: nothing happens
  assert.deepEqual(h.events, ["+3", "+5", "-3:rebalance", "-5:lost"]);
  assert.deepEqual([h.leases.size, h.leases.acquired, h.leases.released], [0, 2, 2]);
  assert.equal(h.telemetry.value("latentwatch.partition.acquired"), 2);
  assert.equal(h.telemetry.value("latentwatch.partition.released", { reason: "lost" }), 1);
  assert.equal(h.telemetry.value("latentwatch.partition.owned", { partition: "3" }), 0);
  assert.equal(h.telemetry.value("latentwatch.partitions.owned"), 0);
  assert.deepEqual(h.lines, [
    'info partition.acquired {"member":"a","partition":3,"free_for_ms":120,"adopted_from":"b"}',
    'info partition.acquired {"member":"a","partition":5,"free_for_ms":0,"previous":"c"}',
    'info partition.released {"member":"a","partition":3,"reason":"rebalance"}',
    'warn partition.released {"member":"a","partition":5,"reason":"lost"}',
  ]);
});

Deno.test("held leases: a failing onRelease is logged and the partition is still given up", async () => {
  const h = held(memoryLeases(), () => {
    throw new Error("pipeline gone");
  });
  await h.leases.hold(1, 7, { free_for_ms: 0 });
  h.leases.release(1, "shutdown");
  assert.equal(h.leases.size, 0);
  assert.deepEqual(h.lines.slice(1), [
    'info partition.released {"member":"a","partition":1,"reason":"shutdown"}',
    'error partition.release_failed {"member":"a","partition":1,"reason":"shutdown",' +
    '"error":"pipeline gone"}',
  ]);
});

Deno.test("held leases: releaseAll gives every partition up and returns what was held", async () => {
  const h = held(memoryLeases());
  await h.leases.hold(6, 10, { free_for_ms: 0 });
  await h.leases.hold(2, 11, { free_for_ms: 0 });
  assert.deepEqual(h.leases.releaseAll("unrenewed"), [[6, 10], [2, 11]]);
  assert.deepEqual(h.events, ["+6", "+2", "-6:unrenewed", "-2:unrenewed"]);
  assert.deepEqual(h.leases.releaseAll("unrenewed"), []);
});

Deno.test("held leases: a renewal moves the lease on, or gives it up when a peer has it", async () => {
  const store = memoryLeases();
  const h = held(store);
  const r0 = (await store.create("partition.0", OURS))!; // revision 1
  const r1 = (await store.create("partition.1", OURS))!; // revision 2
  await h.leases.hold(0, r0, { free_for_ms: 0 });
  await h.leases.hold(1, r1, { free_for_ms: 0 });
  // partition 1 is taken over by a peer (deleted: revision 3, created: revision 4)
  assert.equal(await store.remove("partition.1", r1), true);
  assert.equal(await store.create("partition.1", "b#n2"), 4);
  await h.leases.renew(0, r0);
  await h.leases.renew(1, r1);
  assert.deepEqual(h.leases.entries(), [[0, 5]]);
  assert.deepEqual(h.events, ["+0", "+1", "-1:lost"]);
  assert.equal((await store.get("partition.1"))?.value, "b#n2");
});

Deno.test("held leases: a renewal whose answer was lost finds its own value and goes on", async () => {
  const store = memoryLeases();
  const h = held(store);
  await h.leases.hold(0, (await store.create("partition.0", OURS))!, { free_for_ms: 0 });
  // our earlier renewal went through but its answer never came: revision 2 holds our value
  assert.equal(await store.update("partition.0", OURS, 1), 2);
  await h.leases.renew(0, 1);
  assert.deepEqual(h.leases.entries(), [[0, 3]]);
  assert.deepEqual(h.events, ["+0"]);
});

Deno.test("held leases: a renewal of a partition released meanwhile does not hold it again", async () => {
  const store = memoryLeases();
  const h = held(store);
  await h.leases.hold(0, (await store.create("partition.0", OURS))!, { free_for_ms: 0 });
  const renewal = h.leases.renew(0, 1);
  h.leases.release(0, "unrenewed"); // fenced while the renewal was on its way
  await renewal;
  assert.deepEqual(h.leases.entries(), []);
  assert.deepEqual(h.events, ["+0", "-0:unrenewed"]);
});

Deno.test("removeOurs: at our revision, at a later one of ours, never a peer's", async () => {
  const store = memoryLeases();
  const ours = (v: string) => v === OURS;
  await store.put("k.same", OURS); // revision 1
  assert.equal(await removeOurs(store, "k.same", 1, ours), true);
  await store.put("k.moved", OURS); // revision 3 (2 was the delete)
  await store.put("k.moved", OURS); // revision 4: a renewal in flight moved it on
  assert.equal(await removeOurs(store, "k.moved", 3, ours), true);
  await store.put("k.peer", "b#n2"); // revision 6
  assert.equal(await removeOurs(store, "k.peer", 1, ours), false);
  assert.equal(await removeOurs(store, "k.gone", 1, ours), false);
  assert.deepEqual([...(await store.list("k.")).keys()], ["k.peer"]);
});

Deno.test("removeOurs: a store that fails is false, not thrown", async () => {
  const real = memoryLeases();
  await real.put("k", OURS);
  const failing = delayedStore(real, () => Promise.reject(new Error("no responders")));
  assert.equal(await removeOurs(failing, "k", 1, () => true), false);
  assert.equal((await real.get("k"))?.revision, 1);
});

Deno.test("held leases: remove deletes our lease, and not one a peer took since", async () => {
  const store = memoryLeases();
  const h = held(store);
  await store.create("partition.0", OURS); // 1
  await store.create("partition.1", OURS); // 2
  await store.remove("partition.1", 2); // 3
  await store.create("partition.1", "b#n2"); // 4
  assert.equal(await h.leases.remove(0, 1), true);
  assert.equal(await h.leases.remove(1, 2), false);
  assert.deepEqual([...(await store.list("")).keys()], ["partition.1"]);
});
