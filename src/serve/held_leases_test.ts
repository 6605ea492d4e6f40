/**
 * HeldLeases and removeOurs on a real lease bucket (a JetStream KV bucket on a
 * fresh nats-server, `tests/helpers/lease_bucket.ts`): the revisions written
 * out below are the bucket's, each write (a delete too) taking the next.
 *
 * @module
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import type { LeaseStore } from "../bus/leases.ts";
import { openNatsLeases } from "../bus/nats_leases.ts";
import { LEASE_BUCKET, leaseBucketTest } from "../../tests/helpers/lease_bucket.ts";
import { type Observed, observed } from "../../tests/helpers/observed.ts";
import { HeldLeases, type ReleaseReason, removeOurs } from "./held_leases.ts";

const OURS = "a#n1";
/** Longer than any test here: no entry expires while one runs. */
const TTL_MS = 10_000;

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

/** `held(store)` holding partition `p` under a lease just created (revision 1 of a fresh bucket). */
async function holding(store: LeaseStore, p: number): Promise<Held> {
  const h = held(store);
  const revision = await store.create(`partition.${p}`, OURS);
  assert.equal(revision, 1);
  await h.leases.hold(p, revision!, { free_for_ms: 0 });
  return h;
}

leaseBucketTest(
  "held leases: a partition held and given up is counted, logged and told",
  TTL_MS,
  async ({ store }) => {
    const h = held(store);
    await h.leases.hold(3, (await store.create("partition.3", OURS))!, {
      free_for_ms: 120,
      adopted_from: "b",
    });
    await h.leases.hold(5, (await store.create("partition.5", OURS))!, {
      free_for_ms: 0,
      previous: "c",
    });
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
  },
);

leaseBucketTest(
  "held leases: a failing onRelease is logged and the partition is still given up",
  TTL_MS,
  async ({ store }) => {
    const h = held(store, () => {
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
  },
);

leaseBucketTest(
  "held leases: releaseAll gives every partition up and returns what was held",
  TTL_MS,
  async ({ store }) => {
    const h = held(store);
    await h.leases.hold(6, 10, { free_for_ms: 0 });
    await h.leases.hold(2, 11, { free_for_ms: 0 });
    assert.deepEqual(h.leases.releaseAll("unrenewed"), [[6, 10], [2, 11]]);
    assert.deepEqual(h.events, ["+6", "+2", "-6:unrenewed", "-2:unrenewed"]);
    assert.deepEqual(h.leases.releaseAll("unrenewed"), []);
  },
);

leaseBucketTest(
  "held leases: a renewal moves the lease on, or gives it up when a peer has it",
  TTL_MS,
  async ({ store }) => {
    const h = held(store);
    const r0 = (await store.create("partition.0", OURS))!;
    const r1 = (await store.create("partition.1", OURS))!;
    assert.deepEqual([r0, r1], [1, 2]);
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
  },
);

leaseBucketTest(
  "held leases: a renewal whose answer was lost finds its own value and goes on",
  TTL_MS,
  async ({ store }) => {
    const h = await holding(store, 0);
    // our earlier renewal went through but its answer never came: revision 2 holds our value
    assert.equal(await store.update("partition.0", OURS, 1), 2);
    await h.leases.renew(0, 1);
    assert.deepEqual(h.leases.entries(), [[0, 3]]);
    assert.deepEqual(h.events, ["+0"]);
  },
);

leaseBucketTest(
  "held leases: a renewal of a partition released meanwhile does not hold it again",
  TTL_MS,
  async ({ store }) => {
    const h = await holding(store, 0);
    const renewal = h.leases.renew(0, 1);
    h.leases.release(0, "unrenewed"); // fenced while the renewal was on its way
    await renewal;
    assert.deepEqual(h.leases.entries(), []);
    assert.deepEqual(h.events, ["+0", "-0:unrenewed"]);
    // the renewal's write went through (it expires unless the owner's round removes it)
    assert.deepEqual(await store.get("partition.0"), { value: OURS, revision: 2 });
  },
);

leaseBucketTest(
  "removeOurs: at our revision, at a later one of ours, never a peer's",
  TTL_MS,
  async ({ store }) => {
    const ours = (v: string) => v === OURS;
    assert.equal(await store.put("k.same", OURS), 1);
    assert.equal(await removeOurs(store, "k.same", 1, ours), true);
    assert.equal(await store.put("k.moved", OURS), 3); // 2 was the delete
    assert.equal(await store.put("k.moved", OURS), 4); // a renewal in flight moved it on
    assert.equal(await removeOurs(store, "k.moved", 3, ours), true);
    assert.equal(await store.put("k.peer", "b#n2"), 6); // 5 was the delete
    assert.equal(await removeOurs(store, "k.peer", 1, ours), false);
    assert.equal(await removeOurs(store, "k.gone", 1, ours), false);
    assert.deepEqual([...(await store.list("k.")).keys()], ["k.peer"]);
  },
);

leaseBucketTest(
  "removeOurs: a store that fails is false, not thrown",
  TTL_MS,
  async ({ store, server }) => {
    assert.equal(await store.put("k", OURS), 1);
    // the same bucket through a client whose connection is then closed: every call of it fails
    const nc = await connect({ servers: server.url });
    const failing = await openNatsLeases(nc, { bucket: LEASE_BUCKET, ttlMs: TTL_MS, replicas: 1 });
    await nc.close();
    await assert.rejects(failing.remove("k", 1), /closed/i);
    assert.equal(await removeOurs(failing, "k", 1, () => true), false);
    assert.deepEqual(await store.get("k"), { value: OURS, revision: 1 });
  },
);

leaseBucketTest(
  "held leases: remove deletes our lease, and not one a peer took since",
  TTL_MS,
  async ({ store }) => {
    const h = held(store);
    assert.equal(await store.create("partition.0", OURS), 1);
    assert.equal(await store.create("partition.1", OURS), 2);
    assert.equal(await store.remove("partition.1", 2), true); // 3
    assert.equal(await store.create("partition.1", "b#n2"), 4);
    assert.equal(await h.leases.remove(0, 1), true);
    assert.equal(await h.leases.remove(1, 2), false);
    assert.deepEqual([...(await store.list("")).keys()], ["partition.1"]);
  },
);
