/**
 * The configuration of a {@linkcode ./nats_cluster.ts} cluster's nodes: the
 * generated per-node files, and the `$LW_NATS_*` environment that
 * `deploy/cluster/nats-*.conf` read.
 *
 * @module
 */

/** Ports and store of one node, before it starts. */
export interface NodePlan {
  name: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  storeDir: string;
}

/**
 * The environment the `deploy/cluster` configurations read, for `plans`
 * (node i is 1-based): `LW_NATS_PORT_i`, `LW_NATS_CLUSTER_PORT_i`,
 * `LW_NATS_MONITOR_PORT_i`, `LW_NATS_STORE_i` and `LW_NATS_ROUTE_i`
 * (`nats-route://127.0.0.1:<cluster port>`; every node lists all routes, its
 * own is ignored by the server).
 *
 * @example
 * ```ts
 * const env = clusterEnv([
 *   { name: "nats-1", port: 4222, clusterPort: 6222, monitorPort: 8222, storeDir: "/tmp/n1" },
 * ]);
 * env.LW_NATS_ROUTE_1; // "nats-route://127.0.0.1:6222"
 * ```
 */
export function clusterEnv(plans: NodePlan[]): Record<string, string> {
  const env: Record<string, string> = {};
  plans.forEach((p, i) => {
    const n = i + 1;
    env[`LW_NATS_PORT_${n}`] = String(p.port);
    env[`LW_NATS_CLUSTER_PORT_${n}`] = String(p.clusterPort);
    env[`LW_NATS_MONITOR_PORT_${n}`] = String(p.monitorPort);
    env[`LW_NATS_STORE_${n}`] = p.storeDir;
    env[`LW_NATS_ROUTE_${n}`] = `nats-route://127.0.0.1:${p.clusterPort}`;
  });
  return env;
}

/**
 * A generated configuration for node `index` (0-based) of `plans`: loopback
 * only, JetStream in its store, routes to the other nodes.
 *
 * @example
 * ```ts
 * const plans = [1, 2].map((n) => ({
 *   name: `nats-${n}`, port: 4221 + n, clusterPort: 6221 + n, monitorPort: 8221 + n,
 *   storeDir: `/tmp/n${n}`,
 * }));
 * nodeConfig(plans, 0, "lw").includes("nats-route://127.0.0.1:6223"); // true
 * ```
 */
export function nodeConfig(plans: NodePlan[], index: number, clusterName: string): string {
  const p = plans[index];
  const routes = plans.filter((_, i) => i !== index).map((o) =>
    `"nats-route://127.0.0.1:${o.clusterPort}"`
  );
  return [
    `server_name: ${JSON.stringify(p.name)}`,
    `host: 127.0.0.1`,
    `port: ${p.port}`,
    `http: "127.0.0.1:${p.monitorPort}"`,
    `jetstream { store_dir: ${JSON.stringify(p.storeDir)} }`,
    `cluster {`,
    `  name: ${JSON.stringify(clusterName)}`,
    `  host: 127.0.0.1`,
    `  port: ${p.clusterPort}`,
    `  routes: [${routes.join(", ")}]`,
    `}`,
    ``,
  ].join("\n");
}
