/**
 * startNatsCluster against real nats-server processes: the cluster forms,
 * R3 streams and KV buckets work, a bad node fails the start cleanly, and a
 * SIGKILLed node (a follower, then the stream leader) loses no acked
 * publish and duplicates none while a client keeps publishing.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type KvEntry, Kvm } from "@nats-io/kv";
import { type NatsCluster, startNatsCluster } from "./nats_cluster.ts";
import { freePort, NatsServerStartError } from "./nats_server.ts";
import { startDurablePublisher, streamMsgIds } from "./nats_cluster_probe.ts";

async function withCluster(fn: (c: NatsCluster) => Promise<void>): Promise<void> {
  const cluster = await startNatsCluster({ nodes: 3 });
  try {
    await fn(cluster);
  } finally {
    await cluster.stop();
  }
}

/** A client that walks the URL list in order and reconnects fast, forever. */
function client(urls: string[]): Promise<NatsConnection> {
  return connect({
    servers: urls,
    noRandomize: true,
    reconnectTimeWait: 100,
    maxReconnectAttempts: -1,
    pingInterval: 1000,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("nats cluster: 3 nodes form with a meta leader; an R3 stream acks a publish", () =>
  withCluster(async (cluster) => {
    assert.equal(cluster.nodes.length, 3);
    assert.equal(cluster.url, cluster.urls.join(","));
    assert.equal(new Set(cluster.nodes.map((n) => n.port)).size, 3);
    // every node sees the same meta leader, one of ours
    const leaders = await Promise.all(cluster.nodes.map(async (n) => {
      const jsz = await (await fetch(`http://127.0.0.1:${n.monitorPort}/jsz`)).json();
      return jsz.meta_cluster.leader as string;
    }));
    assert.equal(new Set(leaders).size, 1, `meta leaders seen: ${leaders}`);
    assert.ok(cluster.nodes.some((n) => n.name === leaders[0]), `leader ${leaders[0]}`);

    const nc = await client(cluster.urls);
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.getAccountInfo();
      const info = await jsm.streams.add({ name: "R3", subjects: ["r3.>"], num_replicas: 3 });
      assert.equal(info.config.num_replicas, 3);
      const ack = await jetstream(nc).publish("r3.a", "hello", { msgID: "a-1" });
      assert.equal(ack.stream, "R3");
      assert.equal(ack.seq, 1);
      const dup = await jetstream(nc).publish("r3.a", "hello", { msgID: "a-1" });
      assert.equal(dup.duplicate, true);
      const si = await jsm.streams.info("R3");
      assert.equal(si.state.messages, 1);
      assert.ok(si.cluster?.leader, "the stream has a leader");
      assert.equal(si.cluster?.replicas?.length, 2, JSON.stringify(si.cluster));
    } finally {
      await nc.close();
    }
  }));

Deno.test("nats cluster: an R3 KV bucket with a TTL has create/update(revision)/delete semantics", () =>
  withCluster(async (cluster) => {
    const nc = await client(cluster.urls);
    try {
      const kv = await new Kvm(nc).create("LEASES", { replicas: 3, ttl: 1500 });
      const st = await kv.status();
      assert.equal(st.replicas, 3);
      assert.equal(st.ttl, 1500); // on 2.9 this is the stream's max_age

      const r1 = await kv.create("p0", "owner-a");
      await assert.rejects(kv.create("p0", "owner-b"), /wrong last sequence/);
      const r2 = await kv.update("p0", "owner-a", r1);
      assert.ok(r2 > r1);
      await assert.rejects(kv.update("p0", "owner-b", r1), /wrong last sequence/);
      // a KV get is a direct get that any replica may answer: a follower that has not
      // applied the last write yet answers with the entry before it, so reads settle
      const settled = async (what: string, ok: (e: KvEntry | null) => boolean) => {
        const deadline = Date.now() + 3000;
        let e = await kv.get("p0");
        while (!ok(e)) {
          assert.ok(
            Date.now() < deadline,
            `p0: ${what} within 3 s, found ${e?.operation} ${e?.revision}`,
          );
          await new Promise((r) => setTimeout(r, 50));
          e = await kv.get("p0");
        }
      };
      await settled("owner-a", (e) => e?.string() === "owner-a" && e.revision === r2);

      await kv.delete("p0");
      await settled("deleted", (e) => e?.operation === "DEL");
      // create after delete takes the key (the client retries on the DEL revision)
      const r3 = await kv.create("p0", "owner-b");
      await settled(`revision ${r3}`, (e) => e?.revision === r3);

      // the TTL (max_age) removes the key: no refresh, no key
      const deadline = Date.now() + 6000;
      while (await kv.get("p0") !== null) {
        assert.ok(Date.now() < deadline, "p0 still there 6 s after a 1.5 s TTL");
        await sleep(100);
      }
      // and it can be created again
      await kv.create("p0", "owner-c");
    } finally {
      await nc.close();
    }
  }));

Deno.test("nats cluster: a node that cannot start fails the call with its stderr, and the rest stop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-cluster-bad-" });
  try {
    const good = `${dir}/good.conf`;
    const bad = `${dir}/bad.conf`;
    const goodPort = freePort();
    await Deno.writeTextFile(
      good,
      `server_name: good\nhost: 127.0.0.1\nport: ${goodPort}\njetstream { store_dir: $LW_NATS_STORE_1 }\n`,
    );
    await Deno.writeTextFile(bad, "server_name: bad\nport: $LW_NATS_PORT_2\nno_such_option: 1\n");
    const err = await startNatsCluster({ configFiles: [good, bad], readyTimeoutMs: 3000 })
      .then((c) => c.stop(), (e) => e);
    assert.ok(err instanceof NatsServerStartError, String(err));
    assert.match(err.message, /nats-2 \(.*bad\.conf\) exited with code 1/);
    assert.match(err.stderr, /no_such_option/);
    // the good node was stopped: nothing listens on its port (a second later)
    await sleep(1000);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: goodPort }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nats cluster: nodes and configFiles must agree", async () => {
  await assert.rejects(
    startNatsCluster({ nodes: 3, configFiles: ["a.conf"] }),
    /nodes is 3 but 1 configFiles were given/,
  );
  await assert.rejects(startNatsCluster({ nodes: 0 }), /positive integer, found 0/);
});

for (const victim of ["follower", "stream leader"] as const) {
  Deno.test(`nats cluster: SIGKILL the ${victim} while publishing: every acked message once`, () =>
    withCluster(async (cluster) => {
      const admin = await client(cluster.urls);
      try {
        const jsm = await jetstreamManager(admin, { timeout: 10_000 });
        await jsm.streams.add({
          name: "DUR",
          subjects: ["dur.>"],
          num_replicas: 3,
          duplicate_window: 120_000_000_000,
        });
        const leaderName = (await jsm.streams.info("DUR")).cluster?.leader;
        const target = victim === "stream leader"
          ? cluster.nodes.find((n) => n.name === leaderName)!
          : cluster.nodes.find((n) => n.name !== leaderName)!;
        assert.ok(target, `stream leader ${leaderName} is one of the nodes`);
        // the publisher is connected to the node that dies
        const urls = [target.url, ...cluster.urls.filter((u) => u !== target.url)];
        const nc = await client(urls);
        assert.equal(nc.info?.server_name, target.name);
        const pub = startDurablePublisher(jetstream(nc), "dur.x");
        await sleep(700);
        const survivor = cluster.nodes.find((n) => n !== target)!;
        const jsz = await (await fetch(`http://127.0.0.1:${survivor.monitorPort}/jsz`)).json();
        const metaLeader = jsz.meta_cluster.leader;
        const killedAt = Date.now();
        await target.kill();
        const firstAck = await pub.ackAfter(killedAt, 30_000);
        // the meta leader (stream info, consumer create) may be the one killed
        await cluster.waitReady(60_000);
        const metaBack = Date.now();
        await sleep(1000);
        const res = await pub.stop();
        const outage = res.longestGapAfter(killedAt);
        console.log(
          `kill ${victim} ${target.name} (meta leader ${metaLeader}): first ack ${
            firstAck - killedAt
          } ms after the kill, ` +
            `longest gap ${outage} ms, meta leader back after ${
              metaBack - killedAt
            } ms, ${res.acked.length} acked, ${res.failures} failed attempts ` +
            `(first: ${res.firstError}), client now on ${nc.info?.server_name}`,
        );
        assert.notEqual(nc.info?.server_name, target.name, "the client moved to a survivor");
        assert.ok(res.ackTimes.some((t) => t > killedAt), "acks after the kill");

        const ids = await streamMsgIds(admin, "DUR");
        const seen = new Map<string, number>();
        for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
        const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
        assert.deepEqual(twice, [], "no message id stored twice");
        const lost = res.acked.filter((id) => !seen.has(id));
        assert.deepEqual(lost, [], "every acked message is in the stream");

        // the node comes back with its store and catches up
        await target.restart();
        await cluster.waitReady();
        const deadline = Date.now() + 15_000;
        for (;;) {
          const si = await jsm.streams.info("DUR");
          const reps = si.cluster?.replicas ?? [];
          if (reps.length === 2 && reps.every((r) => r.current)) break;
          assert.ok(Date.now() < deadline, `replicas not current: ${JSON.stringify(si.cluster)}`);
          await sleep(200);
        }
        await nc.close();
      } finally {
        await admin.close();
      }
    }));
}

Deno.test("nats cluster: SIGKILL the KV bucket's leader while a lease is renewed by revision", () =>
  withCluster(async (cluster) => {
    const nc = await client(cluster.urls);
    try {
      const kv = await new Kvm(nc).create("LEASES", { replicas: 3, ttl: 30_000 });
      const jsm = await jetstreamManager(nc, { timeout: 10_000 });
      const leaderName = (await jsm.streams.info("KV_LEASES")).cluster?.leader;
      const target = cluster.nodes.find((n) => n.name === leaderName);
      assert.ok(target, `KV_LEASES leader ${leaderName} is one of the nodes`);

      // the holder renews p0 with update(revision); an update whose ack was
      // lost may have landed: read back and adopt the revision if it holds our value
      let rev = await kv.create("p0", "a:0");
      let stop = false;
      let killedAt = Infinity;
      let firstAfter = 0;
      let failures = 0;
      let adopted = 0;
      let n = 0;
      const renew = (async () => {
        while (!stop) {
          const val = `a:${++n}`;
          for (;;) {
            const sent = Date.now();
            try {
              rev = await kv.update("p0", val, rev, 1000);
            } catch {
              failures++;
              const e = await kv.get("p0").catch(() => null);
              if (e?.string() !== val) {
                assert.ok(
                  !e || e.revision === rev,
                  `lease taken: r${e?.revision} = ${e?.string()}`,
                );
                await sleep(50);
                continue;
              }
              rev = e.revision;
              adopted++;
            }
            if (sent > killedAt && !firstAfter) firstAfter = Date.now();
            break;
          }
          await sleep(20);
        }
      })();
      await sleep(500);
      killedAt = Date.now();
      await target.kill();
      const deadline = Date.now() + 30_000;
      while (!firstAfter) {
        assert.ok(Date.now() < deadline, `no renewal within 30 s of the kill (${failures} failed)`);
        await sleep(20);
      }
      await sleep(500);
      stop = true;
      await renew;
      console.log(
        `kill KV leader ${target.name}: first renewal ${
          firstAfter - killedAt
        } ms after the kill, ` +
          `${failures} failed attempts, ${adopted} adopted after a lost ack, ${n} renewals`,
      );
      const last = await kv.get("p0");
      assert.equal(last?.string(), `a:${n}`);
      assert.equal(last?.revision, rev);
    } finally {
      await nc.close();
    }
  }));
