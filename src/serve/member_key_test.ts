import assert from "node:assert/strict";
import type { LeaseStore } from "../bus/leases.ts";
import { memoryLeases } from "../../tests/helpers/memory_leases.ts";
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

Deno.test("member key: written at the revision last written, every heartbeat", async () => {
  const store = memoryLeases(TTL_MS);
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
});

Deno.test("member key: a write of our own whose answer was lost, or an expired key, is no namesake", async () => {
  const store = memoryLeases(TTL_MS);
  const k = keyed(store);
  await k.key.write(); // 1
  await store.put("member.a", OURS); // 2: our own write, its answer lost in a failover
  assert.equal(await k.key.write(), true);
  assert.equal(k.key.revision, 3);
  await store.remove("member.a", 3); // 4: gone, as after an outage longer than the TTL
  assert.equal(await k.key.write(), true);
  assert.deepEqual(await store.get("member.a"), { value: OURS, revision: 5 });
  assert.deepEqual([k.collisions, k.key.collision], [[], null]);
});

Deno.test("member key: a namesake's write is a collision until a TTL passes without one", async () => {
  const store = memoryLeases(TTL_MS);
  const k = keyed(store);
  await k.key.write(); // 1
  await store.put("member.a", THEIRS); // 2
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
  await store.put("member.a", THEIRS); // 4
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
});

Deno.test("member key: removed on leave, and not a namesake's", async () => {
  const store = memoryLeases(TTL_MS);
  const k = keyed(store);
  assert.equal(await k.key.remove(), false); // never written
  await k.key.write(); // 1
  assert.equal(await k.key.remove(), true);
  assert.equal(await store.get("member.a"), null);

  const moved = keyed(store);
  await moved.key.write(); // 3
  await store.put("member.a", OURS); // 4: a heartbeat of ours cut off by the stop's deadline
  assert.equal(await moved.key.remove(), true);
  assert.equal(await store.get("member.a"), null);

  const taken = keyed(store);
  await taken.key.write(); // 6
  await store.put("member.a", THEIRS); // 7
  assert.equal(await taken.key.remove(), false);
  assert.deepEqual(await store.get("member.a"), { value: THEIRS, revision: 7 });
});
