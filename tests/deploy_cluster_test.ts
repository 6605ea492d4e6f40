/**
 * deploy/cluster: the three nats-server configurations start as one cluster
 * (with free ports through their `$LW_NATS_*` variables), bind only to
 * loopback, and `start.sh` starts and stops them.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsCluster } from "../src/bus/nats_cluster.ts";
import { freePort } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";

const DIR = new URL("../deploy/cluster/", import.meta.url).pathname;
/** A base port whose base, +1 and +2 are free on 127.0.0.1 (start.sh adds 0, 1, 2). */
const taken = new Set<number>();
function freeRange(): number {
  for (;;) {
    const base = freePort();
    const range = [base, base + 1, base + 2];
    if (range.some((p) => taken.has(p) || p > 65535)) continue;
    const ls: Deno.Listener[] = [];
    try {
      for (const port of range) ls.push(Deno.listen({ hostname: "127.0.0.1", port }));
      range.forEach((p) => taken.add(p));
      return base;
    } catch {
      /* one is busy: try another */
    } finally {
      ls.forEach((l) => l.close());
    }
  }
}

const CONFIGS = [1, 2, 3].map((n) => `${DIR}nats-${n}.conf`);

Deno.test("deploy/cluster: nats-1..3.conf form a 3-node JetStream cluster on loopback", async () => {
  const cluster = await startNatsCluster({ configFiles: CONFIGS });
  try {
    assert.deepEqual(cluster.nodes.map((n) => n.name), ["nats-1", "nats-2", "nats-3"]);
    for (const n of cluster.nodes) {
      const varz = await (await fetch(`http://127.0.0.1:${n.monitorPort}/varz`)).json();
      assert.equal(varz.server_name, n.name, "server_name from the file");
      assert.equal(varz.host, "127.0.0.1", `${n.name} client host`);
      assert.equal(varz.cluster.name, "latentwatch");
      assert.equal(varz.cluster.addr, "127.0.0.1", `${n.name} route host`);
      assert.equal(varz.http_host, "127.0.0.1", `${n.name} monitoring host`);
      assert.equal(varz.config_load_time !== undefined, true);
      const jsz = await (await fetch(`http://127.0.0.1:${n.monitorPort}/jsz`)).json();
      assert.equal(jsz.config.store_dir, `${n.storeDir}/jetstream`);
    }
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "DEPLOY", subjects: ["deploy.>"], num_replicas: 3 });
      const ack = await jetstream(nc).publish("deploy.x", "x");
      assert.equal(ack.seq, 1);
      const si = await jsm.streams.info("DEPLOY");
      assert.equal(si.cluster?.replicas?.length, 2, JSON.stringify(si.cluster));
    } finally {
      await nc.close();
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("deploy/cluster: start.sh starts the three nodes and stops them on SIGINT", async () => {
  const state = await Deno.makeTempDir({ prefix: "latentwatch-cluster-sh-" });
  const ports = { client: freeRange(), route: freeRange(), monitor: freeRange() };
  const env: Record<string, string> = { LW_CLUSTER_STATE: state };
  for (const [k, base] of Object.entries(ports)) {
    env[`LW_CLUSTER_${k.toUpperCase()}_BASE`] = String(base);
  }
  const child = new Deno.Command("bash", {
    args: [`${DIR}start.sh`],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out: string[] = [];
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const c of child.stdout) out.push(dec.decode(c));
  })();
  try {
    const deadline = Date.now() + 30_000;
    const urls = [0, 1, 2].map((i) => `nats://127.0.0.1:${ports.client + i}`);
    for (;;) {
      try {
        const nc = await connect({ servers: urls, timeout: 1000 });
        await (await jetstreamManager(nc)).getAccountInfo();
        await nc.close();
        break;
      } catch (err) {
        if (Date.now() > deadline) {
          throw new Error(`start.sh: no JetStream cluster on ${urls} after 30 s: ${err}\n${out}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    for (const n of [1, 2, 3]) {
      await Deno.stat(`${state}/nats-${n}/jetstream`); // store under the state folder
    }
  } finally {
    child.kill("SIGINT");
    const status = await child.status;
    await reading;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(state, { recursive: true });
    assert.equal(status.code, 0, `start.sh exit status, output:\n${out.join("")}`);
  }
  for (const i of [0, 1, 2]) {
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: ports.client + i }),
      `node ${i + 1} still listening after SIGINT`,
    );
  }
});

Deno.test("deploy/cluster: monitor.yaml loads and lists the three servers start.sh starts", async () => {
  const m = await loadMonitorConfig(`${DIR}monitor.yaml`);
  assert.equal(m.nats.url, "nats://127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224");
  const sh = await Deno.readTextFile(`${DIR}start.sh`);
  assert.match(sh, /LW_CLUSTER_CLIENT_BASE:-4222\}/, "start.sh's default client ports");
});
