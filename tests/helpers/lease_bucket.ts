/**
 * A real lease bucket for the partition code's unit tests: a JetStream KV
 * bucket (`openNatsLeases`) on a fresh nats-server spawned on a free
 * loopback port, with the client connected to it; the server is stopped and
 * its store removed afterwards. A fresh bucket's revisions start at 1, and
 * every write, a delete included (a marker), takes the next one.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { LeaseStore } from "../../src/bus/leases.ts";
import { openNatsLeases } from "../../src/bus/nats_leases.ts";
import { type NatsServerProcess, startNatsServer } from "../../src/bus/nats_server.ts";

/** The bucket {@linkcode withLeaseBucket} opens. */
export const LEASE_BUCKET = "lw_unit";

/** What {@linkcode withLeaseBucket} hands its test. */
export interface LeaseBucket {
  /** The bucket, opened on `nc`. */
  store: LeaseStore;
  /** The client the store uses. */
  nc: NatsConnection;
  server: NatsServerProcess;
}

/**
 * Run `fn` with an empty lease bucket of `ttlMs` on a fresh nats-server;
 * the client is closed, the server stopped and its store removed after.
 *
 * @example
 * ```ts
 * import { withLeaseBucket } from "./lease_bucket.ts";
 * await withLeaseBucket(10_000, async ({ store }) => {
 *   await store.create("partition.0", "a#1"); // 1
 *   await store.create("partition.0", "b#2"); // null: it has a live entry
 * });
 * ```
 */
export async function withLeaseBucket(
  ttlMs: number,
  fn: (bucket: LeaseBucket) => Promise<void>,
): Promise<void> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  try {
    const store = await openNatsLeases(nc, { bucket: LEASE_BUCKET, ttlMs, replicas: 1 });
    await fn({ store, nc, server });
  } finally {
    await nc.close();
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
}

/**
 * A `Deno.test` named `name` running `fn` on an empty bucket of its own
 * ({@linkcode withLeaseBucket}). The sanitizers are off, as for the other
 * tests on a real server: nats.js keeps timers a little past a close.
 *
 * @example
 * ```ts
 * import { leaseBucketTest } from "./lease_bucket.ts";
 * leaseBucketTest("a second create is refused", 10_000, async ({ store }) => {
 *   await store.create("partition.0", "a#1"); // 1
 *   await store.create("partition.0", "b#2"); // null
 * });
 * ```
 */
export function leaseBucketTest(
  name: string,
  ttlMs: number,
  fn: (bucket: LeaseBucket) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: () => withLeaseBucket(ttlMs, fn),
  });
}
