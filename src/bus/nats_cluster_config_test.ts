/** The generated node configurations and the `$LW_NATS_*` environment. */
import assert from "node:assert/strict";
import { clusterEnv, nodeConfig, type NodePlan } from "./nats_cluster_config.ts";
import { startNatsCluster } from "./nats_cluster.ts";

const plans: NodePlan[] = [1, 2, 3].map((n) => ({
  name: `nats-${n}`,
  port: 4221 + n,
  clusterPort: 6221 + n,
  monitorPort: 8221 + n,
  storeDir: `/tmp/lw/nats-${n}`,
}));

Deno.test("nodeConfig: loopback ports, own store, routes to the others but not itself", () => {
  const conf = nodeConfig(plans, 1, "lw");
  assert.match(conf, /^server_name: "nats-2"$/m);
  assert.match(conf, /^port: 4223$/m);
  assert.match(conf, /^http: "127\.0\.0\.1:8223"$/m);
  assert.match(conf, /store_dir: "\/tmp\/lw\/nats-2"/);
  assert.match(conf, /^ {2}port: 6223$/m);
  assert.match(
    conf,
    /routes: \["nats-route:\/\/127\.0\.0\.1:6222", "nats-route:\/\/127\.0\.0\.1:6224"\]/,
  );
  assert.doesNotMatch(conf, /0\.0\.0\.0/);
});

Deno.test("clusterEnv: one set of variables per node, routes as URLs", () => {
  assert.deepEqual(clusterEnv(plans.slice(0, 2)), {
    LW_NATS_PORT_1: "4222",
    LW_NATS_CLUSTER_PORT_1: "6222",
    LW_NATS_MONITOR_PORT_1: "8222",
    LW_NATS_STORE_1: "/tmp/lw/nats-1",
    LW_NATS_ROUTE_1: "nats-route://127.0.0.1:6222",
    LW_NATS_PORT_2: "4223",
    LW_NATS_CLUSTER_PORT_2: "6223",
    LW_NATS_MONITOR_PORT_2: "8223",
    LW_NATS_STORE_2: "/tmp/lw/nats-2",
    LW_NATS_ROUTE_2: "nats-route://127.0.0.1:6223",
  });
});

Deno.test("nodeConfig: a store path with a space and a quote is quoted (a real 2-node cluster)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch cluster 'q" });
  try {
    const cluster = await startNatsCluster({ nodes: 2, dir });
    try {
      const jsz = await (await fetch(`http://127.0.0.1:${cluster.nodes[0].monitorPort}/jsz`))
        .json();
      assert.equal(jsz.config.store_dir, `${dir}/nats-1/jetstream`);
    } finally {
      await cluster.stop();
    }
    await Deno.stat(`${dir}/nats-2/jetstream`); // stop keeps a dir it did not make
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
