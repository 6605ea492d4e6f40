/**
 * MemberKey on a real lease bucket (a JetStream KV bucket on a fresh
 * nats-server, `tests/helpers/lease_bucket.ts`): the revisions written out
 * below are the bucket's, each write (a delete too) taking the next. The
 * clock is the test's: the collision's TTL is counted on it.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { LeaseStore } from "../bus/leases.ts";
import { leaseBucketTest } from "../../tests/helpers/lease_bucket.ts";
import { type Observed, observed } from "../../tests/helpers/observed.ts";
import { MemberKey } from "./member_key.ts";

const TTL_MS = 10_000;
/** Our record, as the member key holds it. */
const OURS = '{"partitions":8,"nonce":"n1"}';
/** A namesake's: same name and count, another process. */
const THEIRS = '{"partitions":8,"nonce":"n2"}';

interface Keyed extends Observed {
  key: MemberKey;
  /** `onCollision`'s `first`, call by call. */
  collisions: boolean[];
  /** Move the clock on by `ms`. */
  advance: (ms: number) => void;
}

function keyed(store: LeaseStore): Keyed {
  let t = 1_000;
  const collisions: boolean[] = [];
  const o = observed();
  const key = new MemberKey({
    ...o,
    store,
    member: "a",
    partitions: 8,
    nonce: "n1",
    now: () => t,
    onCollision: (first) => void collisions.push(first),
  });
  return { ...o, key, collisions, advance: (ms) => t += ms };
}

/** `keyed(store)` once its first write went through (revision 1 of a fresh bucket). */
async function written(store: LeaseStore): Promise<Keyed> {
  const k = keyed(store);
  assert.equal(await k.key.write(), true);
  assert.equal(k.key.revision, 1);
  return k;
}

leaseBucketTest(
  "member key: written at the revision last written, every heartbeat",
  TTL_MS,
  async ({ store }) => {
    const k = keyed(store);
    assert.equal(k.key.key, "member.a");
    assert.equal(k.key.value, OURS);
    assert.equal(k.key.revision, null);
    assert.equal(await k.key.write(), true);
    assert.equal(await k.key.write(), true);
    assert.equal(k.key.revision, 2);
    assert.deepEqual(await store.get("member.a"), { value: OURS, revision: 2 });
    assert.equal(k.key.collision, null);
    assert.deepEqual([k.collisions, k.lines], [[], []]);
  },
);

leaseBucketTest(
  "member key: a write of our own whose answer was lost, or an expired key, is no namesake",
  TTL_MS,
  async ({ store }) => {
    const k = await written(store);
    // our own write, its answer lost in a failover
    assert.equal(await store.put("member.a", OURS), 2);
    assert.equal(await k.key.write(), true);
    assert.equal(k.key.revision, 3);
    // deleted (4): gone, as after an outage longer than the TTL (the next test lets one expire)
    assert.equal(await store.remove("member.a", 3), true);
    assert.equal(await k.key.write(), true);
    assert.deepEqual(await store.get("member.a"), { value: OURS, revision: 5 });
    assert.deepEqual([k.collisions, k.key.collision], [[], null]);
  },
);

/** Lease entries of the expiry test live this long in the bucket. */
const SHORT_TTL_MS = 1_000;

leaseBucketTest(
  "member key: a key the bucket let expire is written again, no namesake",
  SHORT_TTL_MS,
  async ({ store }) => {
    const k = await written(store);
    // no heartbeat for longer than the TTL: the server drops the entry (no delete marker)
    const deadline = Date.now() + 10 * SHORT_TTL_MS;
    while (await store.get("member.a") !== null) {
      assert.ok(Date.now() < deadline, `member.a still there ${10 * SHORT_TTL_MS} ms on`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await k.key.write(), true);
    // the update at 1 is refused (nothing is there), and a put writes the stream's next, 2
    assert.equal(k.key.revision, 2);
    assert.deepEqual(await store.get("member.a"), { value: OURS, revision: 2 });
    assert.deepEqual([k.collisions, k.key.collision, k.lines], [[], null, []]);
  },
);

leaseBucketTest(
  "member key: a namesake's write is a collision until a TTL passes without one",
  TTL_MS,
  async ({ store }) => {
    const k = await written(store);
    assert.equal(await store.put("member.a", THEIRS), 2);
    assert.equal(await k.key.write(), false);
    const said = "another sidecar uses the member name 'a' (scale_out.member must be unique)";
    assert.equal(k.key.collision, said);
    // written back over theirs, so the namesake sees the collision too
    assert.deepEqual(await store.get("member.a"), { value: OURS, revision: 3 });
    assert.equal(k.key.revision, 3);
    assert.deepEqual(k.collisions, [true]);
    assert.equal(k.telemetry.value("latentwatch.partition.errors"), 1);

    // the namesake writes again a while later: told again, counted and logged once
    k.advance(6_000);
    assert.equal(await store.put("member.a", THEIRS), 4);
    assert.equal(await k.key.write(), false);
    assert.deepEqual(k.collisions, [true, false]);
    assert.equal(k.telemetry.value("latentwatch.partition.errors"), 1);

    // our writes go through, but within a TTL of its last write the name is still shared
    k.advance(TTL_MS - 1);
    assert.equal(await k.key.write(), false);
    assert.equal(k.key.collision, said);
    k.advance(1);
    assert.equal(await k.key.write(), true);
    assert.equal(k.key.collision, null);
    assert.deepEqual(k.lines, [
      'error partitions.member_collision {"member":"a",' +
      '"expected":"the member key written by this process only (n1)",' +
      '"found":"a write by another process (n2)",' +
      '"note":"scale_out.member must be unique; this sidecar takes no partition meanwhile"}',
      'info partitions.member_collision_over {"member":"a"}',
    ]);
  },
);

leaseBucketTest("member key: removed on leave, and not a namesake's", TTL_MS, async ({ store }) => {
  const k = keyed(store);
  assert.equal(await k.key.remove(), false); // never written
  assert.equal(await k.key.write(), true); // 1
  assert.equal(await k.key.remove(), true); // 2
  assert.equal(await store.get("member.a"), null);

  const moved = keyed(store);
  assert.equal(await moved.key.write(), true);
  assert.equal(moved.key.revision, 3);
  // a heartbeat of ours cut off by the stop's deadline
  assert.equal(await store.put("member.a", OURS), 4);
  assert.equal(await moved.key.remove(), true); // 5
  assert.equal(await store.get("member.a"), null);

  const taken = keyed(store);
  assert.equal(await taken.key.write(), true);
  assert.equal(taken.key.revision, 6);
  assert.equal(await store.put("member.a", THEIRS), 7);
  assert.equal(await taken.key.remove(), false);
  assert.deepEqual(await store.get("member.a"), { value: THEIRS, revision: 7 });
});
