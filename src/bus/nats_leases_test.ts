/**
 * Opening the lease bucket on a real nats-server: a server that does not
 * answer for a while (paused with SIGSTOP, as a cluster electing its
 * JetStream leader does not answer) is tried again until it does; a failure
 * that will not pass fails at once; past the deadline, the tries are counted.
 *
 * @module
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NatsServerProcess, startNatsServer } from "./nats_server.ts";
import { openNatsLeases } from "./nats_leases.ts";
import { LeaseStoreError } from "./leases.ts";
import type { LeaseOpenRetry } from "./bus.ts";
import { within } from "../shared/within.ts";

/** Run `fn` against a fresh server and a client of it; the server is woken and stopped after. */
async function withServer(
  fn: (srv: NatsServerProcess, nc: NatsConnection) => Promise<void>,
): Promise<void> {
  const srv = await startNatsServer();
  const nc = await connect({ servers: srv.url });
  try {
    await fn(srv, nc);
  } finally {
    srv.signal("SIGCONT");
    await nc.close();
    await srv.stop();
  }
}

const opts = { sanitizeResources: false, sanitizeOps: false };

Deno.test({
  name:
    "nats leases: a server that answers again after a pause opens the bucket, the retries reported",
  ...opts,
  fn: () =>
    withServer(async (srv, nc) => {
      const retries: LeaseOpenRetry[] = [];
      srv.signal("SIGSTOP");
      const resume = setTimeout(() => srv.signal("SIGCONT"), 1200);
      const leases = await openNatsLeases(nc, {
        bucket: "lw_paused",
        ttlMs: 5000,
        replicas: 1,
        requestTimeoutMs: 300,
        openDeadlineMs: 20_000,
        onOpenRetry: (r) => retries.push(r),
      }).finally(() => clearTimeout(resume));
      assert.ok(retries.length >= 1, "no retry reported while the server was paused");
      assert.match(retries[0].error, /timeout/i);
      assert.deepEqual(retries.map((r) => r.attempt), retries.map((_, i) => i + 1));
      assert.equal(retries[0].bucket, "lw_paused");
      // the store works: a lease is created once, and a second create of the key is refused
      assert.notEqual(await leases.create("partition.0", "a"), null);
      assert.equal(await leases.create("partition.0", "b"), null);
    }),
});

Deno.test({
  name:
    "nats leases: a failure that will not pass is not tried again; past the deadline the tries are counted",
  ...opts,
  fn: () =>
    withServer(async (srv, nc) => {
      // three replicas on a single server: refused by JetStream, whatever the wait
      const retries: LeaseOpenRetry[] = [];
      const t0 = performance.now();
      await assert.rejects(
        openNatsLeases(nc, {
          bucket: "lw_three",
          ttlMs: 5000,
          replicas: 3,
          onOpenRetry: (r) => retries.push(r),
        }),
        (e: Error) => e instanceof LeaseStoreError && /lw_three/.test(e.message),
      );
      assert.equal(retries.length, 0);
      assert.ok(performance.now() - t0 < 5000);
      // a server that stays paused: tried until the deadline, then the error says how often
      srv.signal("SIGSTOP");
      await assert.rejects(
        openNatsLeases(nc, {
          bucket: "lw_gone",
          ttlMs: 5000,
          replicas: 1,
          requestTimeoutMs: 200,
          openDeadlineMs: 1500,
          onOpenRetry: (r) => retries.push(r),
        }),
        (e: Error) =>
          e instanceof LeaseStoreError && /timeout/i.test(e.message) &&
          /\(\d+ tries\)/.test(e.message),
      );
      assert.ok(retries.length >= 2, `${retries.length} retries before the deadline`);
      // a try whose requests wait longer than the deadline (the client's 5 s) ends at the deadline
      const started = performance.now();
      await assert.rejects(
        openNatsLeases(nc, { bucket: "lw_slow", ttlMs: 5000, replicas: 1, openDeadlineMs: 1000 }),
        LeaseStoreError,
      );
      const took = performance.now() - started;
      assert.ok(took < 2500, `gave up after ${took.toFixed(0)} ms, the deadline was 1000 ms`);
    }),
});

Deno.test({
  name: "nats leases: list gives each live key under the prefix with its revision, " +
    "and ends while peers rewrite and expire their keys",
  ...opts,
  fn: () =>
    withServer(async (srv, nc) => {
      // a short TTL, as partition leases have: entries expire while they are being listed
      const ttlMs = 1500;
      const leases = await openNatsLeases(nc, { bucket: "lw_list", ttlMs, replicas: 1 });
      const expected = new Map<string, number>();
      for (let p = 0; p < 16; p++) {
        expected.set(`a.partition.${p}`, (await leases.create(`a.partition.${p}`, `x${p}`))!);
      }
      expected.set("a.member.one", await leases.put("a.member.one", "m"));
      // another scope's key, and a deleted key, are not listed
      await leases.put("b.partition.0", "other");
      const gone = await leases.put("a.member.gone", "g");
      assert.equal(await leases.remove("a.member.gone", gone), true);
      const first = await leases.list("a.");
      assert.deepEqual([...first.keys()].sort(), [...expected.keys()].sort());
      for (const [k, e] of first) assert.equal(e.revision, expected.get(k), k);
      assert.equal(first.get("a.partition.3")?.value, "x3");
      // two peers rewrite member keys every 100 ms, as sidecars heartbeat, and the partition keys
      // are left to expire: each listing ends within a request's timeout
      const peers = await Promise.all([1, 2].map(() => connect({ servers: srv.url })));
      let writing = true;
      const wrote: Promise<void>[] = [];
      const writers = peers.map((peer, i) => {
        let first!: () => void;
        wrote.push(new Promise<void>((r) => first = r));
        return (async () => {
          const store = await openNatsLeases(peer, { bucket: "lw_list", ttlMs, replicas: 1 });
          for (let n = 0; writing; n++) {
            await store.put(`a.member.peer${i}`, `w${n}`);
            await store.put("a.member.twin", `w${i}.${n}`);
            if (n === 0) first();
            await new Promise((r) => setTimeout(r, 100));
          }
        })();
      });
      try {
        await Promise.all(wrote); // each peer's keys are there from the first listing on
        const until = performance.now() + 3 * ttlMs;
        for (let round = 0; performance.now() < until; round++) {
          const listed = await within(leases.list("a."), 5000);
          assert.ok(listed, `round ${round}: list did not end within 5 s`);
          for (const k of ["a.member.peer0", "a.member.peer1", "a.member.twin"]) {
            assert.ok(listed.has(k), `round ${round}: ${k} missing`);
          }
          assert.equal(listed.has("b.partition.0") || listed.has("a.member.gone"), false);
        }
      } finally {
        writing = false;
        await Promise.all(writers);
        await Promise.all(peers.map((p) => p.close()));
      }
    }),
});
