import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer } from "../bus/nats_server.ts";
import { connectNatsBus, type NatsBus } from "../bus/nats_bus.ts";
import type { LeaseStore } from "../bus/leases.ts";
import { delayedStore, type LeaseOp } from "../../tests/helpers/lease_store.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { PartitionOwner, type ReleaseReason } from "./partition_owner.ts";

const PARTITIONS = 8;
const TTL_MS = 1500;
const HEARTBEAT_MS = 200;

interface Peer {
  name: string;
  bus: NatsBus;
  owner: PartitionOwner;
  /** What the callbacks were told, in order. */
  events: string[];
  /** Partitions whose frames this peer would take now (acquired and not released). */
  taking: Set<number>;
}

async function peer(
  url: string,
  name: string,
  bucket: string,
  heartbeatMs = HEARTBEAT_MS,
): Promise<Peer> {
  const bus = await connectNatsBus({ url, probe: { intervalMs: 0 } });
  const store = await bus.openLeases({ bucket, ttlMs: TTL_MS, replicas: 1 });
  const events: string[] = [];
  const taking = new Set<number>();
  const owner = new PartitionOwner({
    store,
    member: name,
    partitions: PARTITIONS,
    heartbeatMs,
    onAcquire: (p) => {
      events.push(`+${p}`);
      taking.add(p);
    },
    onRelease: (p, why: ReleaseReason) => {
      events.push(`-${p}:${why}`);
      taking.delete(p);
    },
    log: new Logger({ quiet: true }),
    telemetry: new Telemetry(),
  });
  await owner.start();
  return { name, bus, owner, events, taking };
}

/** Run `fn` with a fresh server's URL and a list of peers it fills; every peer and the server are stopped after. */
async function withPeers(fn: (url: string, peers: Peer[]) => Promise<void>): Promise<void> {
  const server = await startNatsServer();
  const peers: Peer[] = [];
  try {
    await fn(server.url, peers);
  } finally {
    for (const p of peers) {
      await p.owner.stop().catch(() => {});
      await p.bus.close().catch(() => {});
    }
    await server.stop();
  }
}

/**
 * Sample every `everyMs` until `done()` or the deadline, failing if two peers
 * ever take the same partition at once; resolves with the ms it took.
 */
async function watchUntil(peers: Peer[], done: () => boolean, deadlineMs: number): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const seen = new Map<number, string>();
    for (const p of peers) {
      for (const n of p.taking) {
        assert.equal(
          seen.get(n),
          undefined,
          `partition ${n} taken by ${seen.get(n)} and ${p.name}`,
        );
        seen.set(n, p.name);
      }
    }
    if (done()) return performance.now() - t0;
    if (performance.now() - t0 > deadlineMs) {
      throw new Error(
        `expected the partitions settled within ${deadlineMs} ms, found ${
          peers.map((p) => `${p.name}=[${[...p.taking]}]`).join(" ")
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every partition taken by exactly one of `peers`, counts balanced. */
function settled(peers: Peer[]): boolean {
  const all = peers.flatMap((p) => [...p.taking]);
  const counts = peers.map((p) => p.taking.size);
  return all.length === PARTITIONS && new Set(all).size === PARTITIONS &&
    Math.max(...counts) - Math.min(...counts) <= 1;
}

Deno.test({
  name:
    "PartitionOwner: peers share partitions, hand them over on join and leave, take a dead one's",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withPeers(async (url, peers) => {
      const bucket = `lw_test_${crypto.randomUUID().slice(0, 8)}`;
      peers.push(await peer(url, "a", bucket));
      await watchUntil(peers, () => settled(peers), 3000);
      assert.equal(peers[0].taking.size, PARTITIONS);

      // two more join: each ends with 2 or 3 of 8, never two owners at once
      peers.push(await peer(url, "b", bucket));
      peers.push(await peer(url, "c", bucket));
      const joinMs = await watchUntil(peers, () => settled(peers), 5000);
      assert.deepEqual(peers.map((p) => p.taking.size).sort(), [2, 3, 3]);
      assert.ok(peers[0].events.some((e) => e.endsWith(":rebalance")), peers[0].events.join(" "));

      // b leaves: its partitions are free at once and taken within a few heartbeats
      const b = peers.splice(1, 1)[0];
      await b.owner.stop();
      await b.bus.close();
      const leaveMs = await watchUntil(peers, () => settled(peers), 5000);
      assert.ok(leaveMs < 4 * HEARTBEAT_MS + 500, `leave handoff took ${leaveMs} ms`);
      assert.ok(b.events.filter((e) => e.endsWith(":shutdown")).length >= 2, b.events.join(" "));

      // c dies (its connection gone, no goodbye): a takes all once c's leases go stale
      const c = peers.pop()!;
      const owned = c.taking.size;
      assert.ok(owned >= 4);
      await c.bus.close(); // its rounds fail from now on; it fences itself
      const deadMs = await watchUntil(
        [...peers, c],
        () => peers[0].taking.size === PARTITIONS,
        8000,
      );
      assert.ok(deadMs >= TTL_MS - HEARTBEAT_MS, `took ${deadMs} ms: before the lease TTL`);
      assert.ok(deadMs < TTL_MS + 4 * HEARTBEAT_MS + 500, `took ${deadMs} ms`);
      // the dead one gave its partitions up by itself before a took them (checked above by
      // watchUntil over [a, c]); it says why
      assert.equal(c.taking.size, 0);
      assert.equal(
        c.events.filter((e) => e.endsWith(":unrenewed")).length,
        owned,
        c.events.join(" "),
      );
      await c.owner.stop();
      console.log(
        `join ${joinMs.toFixed(0)} ms, leave ${leaveMs.toFixed(0)} ms, dead ${
          deadMs.toFixed(0)
        } ms (TTL ${TTL_MS}, heartbeat ${HEARTBEAT_MS})`,
      );
    }),
});

Deno.test({
  name: "PartitionOwner: a bucket with another TTL is refused, naming both",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
    try {
      await bus.openLeases({ bucket: "lw_ttl", ttlMs: 2000, replicas: 1 });
      await assert.rejects(
        () => bus.openLeases({ bucket: "lw_ttl", ttlMs: 3000, replicas: 1 }),
        (err: Error) => {
          assert.match(err.message, /lw_ttl/);
          assert.match(err.message, /expected a TTL of 3000 ms/);
          assert.match(err.message, /found 2000 ms/);
          return true;
        },
      );
    } finally {
      await bus.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "PartitionOwner: a round hung on a stalled broker does not keep partitions past the fence",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
    try {
      const real = await bus.openLeases({ bucket: "lw_stall", ttlMs: TTL_MS, replicas: 1 });
      // test double for a broker that stops answering without closing the connection
      // (the real client waits for its request timeout): calls hang while `stalled`
      let stalled = false;
      let listing = true;
      const never = new Promise<never>(() => {});
      const hang = <T>(f: () => Promise<T>) => stalled ? never : f();
      const store = {
        ttlMs: real.ttlMs,
        replicas: real.replicas,
        list: (p: string) =>
          hang(() => listing ? real.list(p) : Promise.reject(new Error("stream info timeout"))),
        get: (k: string) => hang(() => real.get(k)),
        create: (k: string, v: string) => hang(() => real.create(k, v)),
        update: (k: string, v: string, r: number) => hang(() => real.update(k, v, r)),
        put: (k: string, v: string) => hang(() => real.put(k, v)),
        remove: (k: string, r: number) => hang(() => real.remove(k, r)),
      };
      const released: { p: number; why: string; at: number }[] = [];
      const owner = new PartitionOwner({
        store,
        member: "solo",
        partitions: 4,
        heartbeatMs: HEARTBEAT_MS,
        onAcquire: () => {},
        onRelease: (p, why) => void released.push({ p, why, at: performance.now() }),
        log: new Logger({ quiet: true }),
        telemetry: new Telemetry(),
      });
      await owner.start();
      assert.equal(owner.owned.size, 4);
      // a meta-leader election stalls listing keys (a consumer) but not renewals:
      // the leases are kept through more than a TTL of it
      listing = false;
      await new Promise((r) => setTimeout(r, TTL_MS + 2 * HEARTBEAT_MS));
      assert.equal(owner.owned.size, 4, "kept its partitions while only reading failed");
      assert.equal(released.length, 0);
      listing = true;
      stalled = true;
      const t0 = performance.now();
      while (owner.owned.size > 0 && performance.now() - t0 < 3 * TTL_MS) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(owner.owned.size, 0, "gave its partitions up while the round hung");
      assert.deepEqual(released.map((r) => r.why), [
        "unrenewed",
        "unrenewed",
        "unrenewed",
        "unrenewed",
      ]);
      // all at once: none keeps taking frames while another is given up
      assert.ok(released[3].at - released[0].at < 5, "released together");
      const after = released[0].at - t0;
      // not before the lease could have been renewed, and at least a heartbeat
      // before peers could count it dead (a TTL after the last renewal)
      assert.ok(after <= TTL_MS - HEARTBEAT_MS + HEARTBEAT_MS / 2, `fenced after ${after} ms`);
      assert.ok(after >= TTL_MS - 2 * HEARTBEAT_MS, `fenced after ${after} ms`);
      // the shutdown does not wait for the hung round past two heartbeats
      const s0 = performance.now();
      await owner.stop();
      assert.ok(performance.now() - s0 < 3 * HEARTBEAT_MS + 200, "stop was bounded");
    } finally {
      await bus.close();
      await server.stop();
    }
  },
});

/** Count releases of `owner` by reason while `ms` pass. */
function releases(events: string[]): number {
  return events.filter((e) => e.startsWith("-")).length;
}

Deno.test({
  name: "PartitionOwner: two processes with one member name own nothing and say so",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withPeers(async (url, peers) => {
      const bucket = `lw_twin_${crypto.randomUUID().slice(0, 8)}`;
      peers.push(await peer(url, "twin", bucket));
      await watchUntil(peers, () => peers[0].taking.size === PARTITIONS, 3000);
      peers.push(await peer(url, "twin", bucket));
      // both see the other's writes to the member key: neither may own a partition
      await watchUntil(
        peers,
        () => peers.every((p) => p.taking.size === 0 && p.owner.problem !== null),
        5000,
      );
      assert.match(peers[1].owner.problem!, /another sidecar uses the member name 'twin'/);
      // the second one goes: the first takes everything again
      const twin = peers.pop()!;
      await twin.owner.stop();
      await twin.bus.close();
      await watchUntil(peers, () => peers[0].taking.size === PARTITIONS, TTL_MS + 8000);
      assert.equal(peers[0].owner.problem, null);
    }),
});

Deno.test({
  name: "PartitionOwner: a peer with another partition count, or one that takes nothing, " +
    "is left out without partitions flapping",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const peers: Peer[] = [];
    const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
    let beating = true;
    try {
      const bucket = `lw_odd_${crypto.randomUUID().slice(0, 8)}`;
      const raw = await bus.openLeases({ bucket, ttlMs: TTL_MS, replicas: 1 });
      // two members that heartbeat but never take a lease: one counts 16 partitions,
      // one counts 8 like us (a sidecar stuck before it settles anything)
      const beat = (async () => {
        while (beating) {
          await raw.put("member.odd", JSON.stringify({ partitions: 16, nonce: "x" }));
          await raw.put("member.stuck", JSON.stringify({ partitions: PARTITIONS, nonce: "y" }));
          await new Promise((r) => setTimeout(r, HEARTBEAT_MS));
        }
      })();
      peers.push(await peer(server.url, "a", bucket));
      // "odd" is never assigned anything; "stuck"'s share is adopted after three rounds
      await watchUntil(peers, () => peers[0].taking.size === PARTITIONS, 10 * HEARTBEAT_MS);
      const before = releases(peers[0].events);
      await new Promise((r) => setTimeout(r, 2 * TTL_MS));
      const flaps = releases(peers[0].events) - before;
      console.log(`releases while a stuck member heartbeats: ${flaps} in ${2 * TTL_MS} ms`);
      // passed over for a TTL at a time: at most one hand-back per TTL for each of its partitions
      assert.ok(flaps <= 2 * (PARTITIONS / 2), `${flaps} releases in ${2 * TTL_MS} ms`);
      assert.ok(!peers[0].owner.stats().members.includes("odd"));
      beating = false;
      await beat;
    } finally {
      beating = false;
      for (const p of peers) {
        await p.owner.stop().catch(() => {});
        await p.bus.close().catch(() => {});
      }
      await bus.close();
      await server.stop();
    }
  },
});

Deno.test({
  name: "PartitionOwner: a lease bucket deleted under it is created again and the partitions taken",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const peers: Peer[] = [];
    const nc = await connect({ servers: server.url });
    try {
      const bucket = `lw_gone_${crypto.randomUUID().slice(0, 8)}`;
      peers.push(await peer(server.url, "a", bucket));
      await watchUntil(peers, () => peers[0].taking.size === PARTITIONS, 3000);
      await (await jetstreamManager(nc)).streams.delete(`KV_${bucket}`);
      // its renewals fail once, then it recreates the bucket and holds its partitions again
      await new Promise((r) => setTimeout(r, 4 * HEARTBEAT_MS));
      await watchUntil(peers, () => peers[0].taking.size === PARTITIONS, TTL_MS + 8000);
      const info = await (await jetstreamManager(nc)).streams.info(`KV_${bucket}`);
      assert.equal(info.config.name, `KV_${bucket}`);
      assert.equal(peers[0].owner.problem, null);
    } finally {
      for (const p of peers) {
        await p.owner.stop().catch(() => {});
        await p.bus.close().catch(() => {});
      }
      await nc.close();
      await server.stop();
    }
  },
});

/**
 * Test double for a loaded broker: the real store of a fresh bucket, each call answered
 * `lateMs(op)` ms late (0: at once). Runs `fn` with it and the real store, then cleans up.
 */
async function withLateStore(
  opts: { bucket: string; ttlMs: number; lateMs: (op: LeaseOp) => number },
  fn: (store: LeaseStore, real: LeaseStore) => Promise<void>,
): Promise<void> {
  const server = await startNatsServer();
  const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
  try {
    const real = await bus.openLeases({ bucket: opts.bucket, ttlMs: opts.ttlMs, replicas: 1 });
    const store = delayedStore(real, (op) => {
      const ms = opts.lateMs(op);
      return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : undefined;
    });
    await fn(store, real);
  } finally {
    await bus.close();
    await server.stop();
  }
}

/** An owner of {@linkcode PARTITIONS} partitions on `store` that only records its releases. */
function quietOwner(store: LeaseStore, member: string, heartbeatMs: number, released: string[]) {
  return new PartitionOwner({
    store,
    member,
    partitions: PARTITIONS,
    heartbeatMs,
    onAcquire: () => {},
    onRelease: (p, why) => void released.push(`${p}:${why}`),
    log: new Logger({ quiet: true }),
    telemetry: new Telemetry(),
  });
}

Deno.test({
  name: "PartitionOwner: a slow store (every call 250 ms, as under full load) keeps its leases",
  sanitizeOps: false,
  sanitizeResources: false,
  // a sidecar busy encoding: each call answers a quarter second late
  fn: () =>
    withLateStore({ bucket: "lw_slow", ttlMs: TTL_MS, lateMs: () => 250 }, async (store) => {
      const released: string[] = [];
      const owner = quietOwner(store, "busy", HEARTBEAT_MS, released);
      await owner.start();
      assert.equal(owner.owned.size, PARTITIONS);
      // nine renewals one after another would take 2.25 s, past the fence (1.3 s)
      await new Promise((r) => setTimeout(r, 2 * TTL_MS));
      assert.deepEqual(released, []);
      assert.equal(owner.owned.size, PARTITIONS);
      await owner.stop();
    }),
});

Deno.test({
  name: "PartitionOwner: a stop while a round renews still deletes every lease and its member key",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // renewals (updates) answer 150 ms late once the owner holds its leases, the rest at once
    let slowUpdates = false;
    const lateMs = (op: string) => slowUpdates && op === "update" ? 150 : 0;
    await withLateStore({ bucket: "lw_stop", ttlMs: 60_000, lateMs }, async (store, real) => {
      // no round of its own: the test starts the one it stops in
      const owner = quietOwner(store, "leaving", 60_000, []);
      await owner.start();
      assert.equal(owner.owned.size, PARTITIONS);
      slowUpdates = true;
      // stop once the round's renewals are on their way: they move every lease to a new revision
      const round = owner.round();
      await new Promise((r) => setTimeout(r, 50));
      await owner.stop();
      await round;
      // a lease left behind would keep peers off its partition for the TTL (a minute here), and
      // a member key would keep the member in their assignment as long
      assert.deepEqual([...(await real.list("")).keys()], []);
    });
  },
});

Deno.test({
  name: "PartitionOwner: a namesake that writes less often than we do still keeps us off " +
    "every partition, until a TTL without its writes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withPeers(async (url, peers) => {
      const fast = await peer(url, "same", "lw_namesake", 100);
      peers.push(fast);
      // most of fast's rewrites now go through between two of the namesake's
      peers.push(await peer(url, "same", "lw_namesake", 600));
      // once the collision is seen, fast owns nothing and says so for as long as the other writes
      const t0 = performance.now();
      while (fast.owner.problem === null && performance.now() - t0 < 3000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(fast.owner.problem ?? "", /another sidecar uses the member name 'same'/);
      const until = performance.now() + 2 * TTL_MS;
      while (performance.now() < until) {
        assert.notEqual(fast.owner.problem, null);
        assert.equal(fast.taking.size, 0, `took ${[...fast.taking]} while its namesake writes`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // the other one goes: a TTL later fast takes everything
      const namesake = peers.pop()!;
      await namesake.owner.stop();
      await namesake.bus.close();
      const gone = performance.now();
      while (fast.taking.size < PARTITIONS && performance.now() - gone < TTL_MS + 3000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(fast.taking.size, PARTITIONS);
      assert.equal(fast.owner.problem, null);
      // its last write came up to a heartbeat (600 ms) and a request before it went; without the
      // TTL's wait the collision would end at fast's next round, some 100 ms after
      assert.ok(performance.now() - gone >= TTL_MS - 1000, "the collision ended before a TTL");
    }),
});
