/**
 * deploy/nats/accounts.conf lets the sidecar user keep partition leases
 * (scale-out, docs/scale-out.md) in the one lease bucket, and nobody else:
 * the real PartitionOwner over the real lease bucket on a nats-server started
 * with that file, then refusals for another bucket and for the other users.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { startNatsServer } from "../src/bus/nats_server.ts";
import { NatsBus } from "../src/bus/nats_bus.ts";
import { scopedLeases } from "../src/bus/leases.ts";
import { SCALE_OUT_DEFAULTS } from "../src/config/monitor_scale_out.ts";
import { PartitionOwner } from "../src/serve/partition_owner.ts";
import { Logger } from "../src/shared/log.ts";
import { PASSWORDS, violations } from "./helpers/nats_accounts.ts";
import { Telemetry } from "../src/shared/telemetry.ts";

const ACCOUNTS = fileURLToPath(new URL("../deploy/nats/accounts.conf", import.meta.url));

Deno.test({
  name: "deploy: the sidecar user keeps partition leases in the lease bucket, and nothing else",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
    const srv = await startNatsServer({ configFile: ACCOUNTS });
    const open: NatsConnection[] = [];
    const login = async (user: string, pass: string) => {
      const nc = await connect({ servers: srv.url, user, pass });
      open.push(nc);
      return nc;
    };
    try {
      const sidecar = await login("latentwatch", PASSWORDS.LATENTWATCH_NATS_PASSWORD);
      const errors = violations(sidecar);
      const bus = new NatsBus(sidecar, { url: srv.url, probe: { intervalMs: 0 } });
      const store = await bus.openLeases({
        bucket: SCALE_OUT_DEFAULTS.bucket,
        ttlMs: 2000,
        replicas: 1,
      });
      const owned = new Set<number>();
      const owner = new PartitionOwner({
        store: scopedLeases(store, "demo."),
        member: "a",
        partitions: 4,
        heartbeatMs: 200,
        onAcquire: (p) => void owned.add(p),
        onRelease: (p) => void owned.delete(p),
        log: new Logger({ quiet: true }),
        telemetry: new Telemetry(),
      });
      await owner.start(); // create, list (a consumer), renew, read
      await new Promise((r) => setTimeout(r, 600));
      assert.equal(owned.size, 4);
      await owner.stop(); // delete
      assert.equal(owned.size, 0);
      assert.equal((await store.list("demo.")).size, 0, "leases deleted on leave");
      assert.deepEqual(errors, [], "no permission violation on the lease path");

      // another bucket: refused
      await assert.rejects(
        bus.openLeases({ bucket: "elsewhere", ttlMs: 2000, replicas: 1 }),
        /Permissions Violation for Publish to "\$JS\.API\.STREAM\.INFO\.KV_elsewhere"/,
      );
      // a tap cannot write leases (it could steal partitions)
      const tap = await login("tap", PASSWORDS.LATENTWATCH_TAP_PASSWORD);
      const kv = await new Kvm(jetstream(tap, { timeout: 2000 })).open(SCALE_OUT_DEFAULTS.bucket);
      await assert.rejects(
        kv.put("demo.partition.0", "tap"),
        /Permissions Violation for Publish to "\$KV\.latentwatch_partitions\.demo\.partition\.0"/,
      );
    } finally {
      for (const nc of open) await nc.close().catch(() => {});
      await srv.stop();
    }
  },
});
