// PartitionOwner driven round by round on a manual clock: the order of the
// peers' rounds is the test's, not the timers', so a race seen 1 run in 6–8
// under the timers is reproduced every time.
import assert from "node:assert/strict";
import { startNatsServer } from "../bus/nats_server.ts";
import { connectNatsBus } from "../bus/nats_bus.ts";
import type { LeaseStore } from "../bus/leases.ts";
import { delayedStore } from "../../tests/helpers/lease_store.ts";
import { assignPartitions } from "../core/frame/assign.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { PartitionOwner } from "./partition_owner.ts";
import { MEMBER, PARTITION } from "./partition_view.ts";

const PARTITIONS = 8;
/** Long enough that no lease expires on the server while the test runs. */
const TTL_MS = 60_000;
/** Longer than the test: no round runs but those it calls. */
const HEARTBEAT_MS = 600_000;

interface Member {
  name: string;
  owner: PartitionOwner;
  /** Acquisitions and releases, in order (`+3`, `-3:rebalance`). */
  events: string[];
}

function member(store: LeaseStore, name: string, now: () => number): Member {
  const events: string[] = [];
  const owner = new PartitionOwner({
    store,
    member: name,
    partitions: PARTITIONS,
    heartbeatMs: HEARTBEAT_MS,
    now,
    onAcquire: (p) => void events.push(`+${p}`),
    onRelease: (p, why) => void events.push(`-${p}:${why}`),
    log: new Logger({ quiet: true }),
    telemetry: new Telemetry(),
  });
  return { name, owner, events };
}

/**
 * Test double for a leave whose member-key delete reaches the broker late:
 * the real store, except that removing `heldKey` waits until `release()`.
 */
function holdingRemoval(real: LeaseStore, heldKey: string) {
  let release = () => {};
  const released = new Promise<void>((r) => release = r);
  const store = delayedStore(
    real,
    (op, key) => op === "remove" && key === heldKey ? released : undefined,
  );
  return { store, release };
}

Deno.test({
  name: "PartitionOwner: a leaver's partition waits three rounds for its successor, " +
    "not counting the rounds that still named the leaver",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
    const t = 1_000; // the clock stands still: every key stays live in every view
    const now = () => t;
    let leave: Promise<void> | null = null;
    let releaseHeld = () => {};
    const members: Member[] = [];
    try {
      const real = await bus.openLeases({ bucket: "lw_rounds", ttlMs: TTL_MS, replicas: 1 });
      const held = holdingRemoval(real, `${MEMBER}a`);
      releaseHeld = held.release;
      const a = member(held.store, "a", now);
      members.push(a, member(real, "b", now), member(real, "c", now));
      for (const m of members) await m.owner.start();
      // rounds until each holds its share: the partitions a took alone are handed over
      for (let i = 0; i < 3; i++) for (const m of members) await m.owner.round();
      const three = assignPartitions(["a", "b", "c"], PARTITIONS);
      for (const m of members) {
        const share = three.flatMap((w, p) => (w === m.name ? [p] : []));
        assert.deepEqual([...m.owner.owned].sort(), share, `${m.name}'s share`);
      }

      // a partition of a's, the member it goes to once a has left, and the third one
      const p = three.indexOf("a");
      const successor = assignPartitions(["b", "c"], PARTITIONS)[p]!;
      const peer = members.find((m) => m.name !== "a" && m.name !== successor)!;
      const next = members.find((m) => m.name === successor)!;

      // a leaves: its leases are deleted, its member key not yet
      leave = a.owner.stop();
      for (let i = 0; (await real.get(`${PARTITION}${p}`)) !== null; i++) {
        assert.ok(i < 200, `expected a's lease on ${p} deleted, found it still there after 2 s`);
        await new Promise((r) => setTimeout(r, 10));
      }
      await peer.owner.round(); // p is free and still assigned to a: one round for a
      held.release();
      await leave;
      leave = null;

      // now p is assigned to the successor, which has had no round yet: the peer must give it
      // three rounds of its own, not count the one that named a
      await peer.owner.round();
      await peer.owner.round();
      assert.ok(
        !peer.owner.owned.has(p),
        `expected ${peer.name} to leave partition ${p} to ${successor} for three rounds, ` +
          `found it adopted (${peer.name}: ${peer.events.join(" ")})`,
      );
      await next.owner.round();
      assert.ok(next.owner.owned.has(p), `expected ${successor} to take partition ${p}`);
      assert.ok(!next.events.some((e) => e.startsWith(`-${p}:`)), next.events.join(" "));
      // and once it holds it, the peer's rounds leave it there
      await peer.owner.round();
      assert.ok(!peer.owner.owned.has(p));
      assert.ok(next.owner.owned.has(p));
    } finally {
      releaseHeld(); // a stop waiting on the held delete would wait out two (long) heartbeats
      if (leave) await leave.catch(() => {});
      for (const m of members) await m.owner.stop().catch(() => {});
      await bus.close();
      await server.stop();
    }
  },
});
