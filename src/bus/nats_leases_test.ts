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
