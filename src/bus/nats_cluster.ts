/**
 * Start a real N-node `nats-server` cluster (routes + clustered JetStream) on
 * loopback, for the tests and the scale-out harness: free client, route and
 * monitoring ports, a store directory and a `server_name` per node, and a
 * wait until the routes are up and JetStream has a meta leader that every
 * node sees with all its peers current.
 *
 * The nodes run either generated configuration files or the operator's
 * (`configFiles`, e.g. `deploy/cluster/nats-*.conf`), which read their ports
 * and store from `$LW_NATS_*` environment variables ({@linkcode clusterEnv}).
 *
 * @module
 */
import { findNatsServer, freePort, NatsServerStartError } from "./nats_server.ts";
import { clusterEnv, nodeConfig, type NodePlan } from "./nats_cluster_config.ts";

export { clusterEnv, nodeConfig, type NodePlan };

/** One node of a {@linkcode NatsCluster}. */
export interface NatsClusterNode {
  /** Its `server_name` (`nats-1`, `nats-2`, …); stream info's `cluster.leader` names it. */
  readonly name: string;
  /** Client URL, `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Client port. */
  readonly port: number;
  /** Route (cluster) port. */
  readonly clusterPort: number;
  /** Monitoring (HTTP) port: `/jsz`, `/routez`, `/varz`. */
  readonly monitorPort: number;
  /** JetStream store directory (kept across {@linkcode restart}). */
  readonly storeDir: string;
  /** Process id of the running server; null while it is down. */
  readonly pid: number | null;
  /** Send `signal` (default SIGKILL: no clean shutdown) and wait until the process is gone. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** Stop it cleanly (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** Start it again with the same ports and store; resolves once it listens (see `waitReady`). */
  restart(): Promise<void>;
}

/** A running cluster from {@linkcode startNatsCluster}. */
export interface NatsCluster {
  /** The nodes' client URLs, in node order. */
  readonly urls: string[];
  /** The client URLs comma-joined (what `nats.url` takes). */
  readonly url: string;
  readonly nodes: NatsClusterNode[];
  /** Cluster name. */
  readonly name: string;
  /**
   * Wait until the running nodes have their routes up and agree on a
   * JetStream meta leader with every running peer current.
   */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Stop every node; removes the temporary directory when the harness made it. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startNatsCluster}. */
export interface NatsClusterOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** Cluster name (default `latentwatch`; ignored with `configFiles`, which set their own). */
  clusterName?: string;
  /** Parent of the store directories (default: a new temporary directory, removed by stop). */
  dir?: string;
  /**
   * Configuration files, one per node, that read `$LW_NATS_*` variables
   * ({@linkcode clusterEnv}) instead of the generated ones.
   */
  configFiles?: string[];
  /** How long to wait for the cluster to form (default 30 s). */
  readyTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What `/jsz` says about the meta group (the fields we read). */
interface Jsz {
  meta_cluster?: {
    leader?: string;
    cluster_size?: number;
    replicas?: { name: string; current: boolean; offline?: boolean }[];
  };
}

/** Fetch a monitoring endpoint's JSON; null when it does not answer. */
async function monitor<T>(port: number, path: string): Promise<T | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(1000),
    });
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    return await res.json() as T;
  } catch {
    return null;
  }
}

class Node implements NatsClusterNode {
  #child: Deno.ChildProcess | null = null;
  #exitCode: number | null = null;
  #tail: string[] = [];
  readonly url: string;
  readonly name: string;
  readonly port: number;
  readonly clusterPort: number;
  readonly monitorPort: number;
  readonly storeDir: string;

  constructor(
    plan: NodePlan,
    readonly bin: string,
    readonly configFile: string,
    readonly env: Record<string, string>,
  ) {
    ({
      name: this.name,
      port: this.port,
      clusterPort: this.clusterPort,
      monitorPort: this.monitorPort,
      storeDir: this.storeDir,
    } = plan);
    this.url = `nats://127.0.0.1:${plan.port}`;
  }
  get pid() {
    return this.#child?.pid ?? null;
  }
  get running() {
    return this.#child !== null && this.#exitCode === null;
  }
  /** The end of what the server wrote to stderr. */
  get stderrTail() {
    return this.#tail.join("").split("\n").slice(-25).join("\n");
  }

  /** Spawn the process and wait until its client port accepts connections. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.#child) throw new Error(`${this.name}: already running (pid ${this.pid})`);
    this.#tail = [];
    this.#exitCode = null;
    const child = new Deno.Command(this.bin, {
      args: ["-c", this.configFile],
      env: this.env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    child.status.then((s) => {
      if (this.#child === child) this.#exitCode = s.code;
    }).catch(() => {});
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.#tail.push(dec.decode(chunk));
        if (this.#tail.length > 60) this.#tail.shift();
      }
    })().catch(() => {});
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (this.#child !== child) {
        throw new NatsServerStartError(`nats-server ${this.name}: stopped while starting`);
      }
      if (this.#exitCode !== null) {
        const code = this.#exitCode;
        await sleep(50); // let the stderr tail arrive
        this.#child = null;
        throw new NatsServerStartError(
          `nats-server ${this.name} (${this.configFile}) exited with code ${code} at start:\n${this.stderrTail}`,
          this.stderrTail,
          code,
        );
      }
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
        return;
      } catch (err) {
        lastError = err;
        await sleep(50);
      }
    }
    throw new NatsServerStartError(
      `nats-server ${this.name} did not listen on 127.0.0.1:${this.port} within ${timeoutMs} ms:\n${this.stderrTail}`,
      this.stderrTail,
      null,
      { cause: lastError },
    );
  }

  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    const c = this.#child;
    if (!c) return;
    try {
      c.kill(signal);
    } catch { /* already gone */ }
    await c.status;
    this.#child = null;
  }

  async stop(): Promise<void> {
    const c = this.#child;
    if (!c) return;
    const timer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await this.kill("SIGTERM");
    clearTimeout(timer);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

/**
 * Start an N-node (default 3) `nats-server` cluster with clustered JetStream
 * on loopback and wait until it has formed (routes up, a JetStream meta
 * leader, every peer current). A node that fails to start fails the call
 * with its stderr tail ({@linkcode NatsServerStartError}), after every node
 * started so far is stopped.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * import { jetstreamManager } from "@nats-io/jetstream";
 *
 * const cluster = await startNatsCluster({ nodes: 3 });
 * const nc = await connect({ servers: cluster.urls });
 * const jsm = await jetstreamManager(nc);
 * await jsm.streams.add({ name: "ALERTS", subjects: ["alerts.>"], num_replicas: 3 });
 * await cluster.nodes[0].kill(); // SIGKILL
 * await cluster.nodes[0].restart(); // same ports, same store
 * await nc.close();
 * await cluster.stop();
 * ```
 */
export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  const count = opts.configFiles?.length ?? opts.nodes ?? 3;
  if (opts.configFiles && opts.nodes !== undefined && opts.nodes !== count) {
    throw new Error(
      `startNatsCluster: nodes is ${opts.nodes} but ${count} configFiles were given (one per node expected)`,
    );
  }
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(`startNatsCluster: nodes must be a positive integer, found ${count}`);
  }
  const bin = await findNatsServer();
  if (!bin) {
    throw new NatsServerStartError(
      "nats-server not found: install it (Debian: `apt-get install nats-server`) or set NATS_SERVER",
    );
  }
  const clusterName = opts.clusterName ?? "latentwatch";
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "latentwatch-nats-cluster-" });
  const taken = new Set<number>();
  const port = () => {
    for (;;) {
      const p = freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const plans: NodePlan[] = Array.from({ length: count }, (_, i) => ({
    name: `nats-${i + 1}`,
    port: port(),
    clusterPort: port(),
    monitorPort: port(),
    storeDir: `${dir}/nats-${i + 1}`,
  }));
  const env = clusterEnv(plans);
  const nodes: Node[] = [];
  for (const [i, plan] of plans.entries()) {
    await Deno.mkdir(plan.storeDir, { recursive: true });
    let file = opts.configFiles?.[i];
    if (!file) {
      file = `${dir}/${plan.name}.conf`;
      await Deno.writeTextFile(file, nodeConfig(plans, i, clusterName));
    }
    nodes.push(new Node(plan, bin, file, env));
  }

  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  const waitReady = async (timeoutMs = opts.readyTimeoutMs ?? 30_000) => {
    const deadline = Date.now() + timeoutMs;
    let why = "";
    while (Date.now() < deadline) {
      const up = nodes.filter((n) => n.running);
      if (up.length === 0) {
        why = "no node is running";
      } else {
        why = await notReady(up, count);
        if (!why) return;
      }
      await sleep(100);
    }
    const tails = nodes.map((n) => `--- ${n.name} stderr ---\n${n.stderrTail}`).join("\n");
    throw new NatsServerStartError(
      `nats cluster did not form within ${timeoutMs} ms: ${why}\n${tails}`,
    );
  };

  try {
    await Promise.all(nodes.map((n) => n.start()));
    await waitReady();
  } catch (err) {
    await stop();
    throw err;
  }
  const urls = nodes.map((n) => n.url);
  return { urls, url: urls.join(","), nodes, name: clusterName, waitReady, stop };
}

/**
 * Why the running nodes `up` (of `size`) are not a formed cluster yet, or ""
 * when they are: every one answers `/jsz` with the same meta leader, and
 * lists the other running nodes as current peers.
 */
async function notReady(up: Node[], size: number): Promise<string> {
  const names = new Set(up.map((n) => n.name));
  let leader: string | undefined;
  for (const n of up) {
    const jsz = await monitor<Jsz>(n.monitorPort, "/jsz");
    const meta = jsz?.meta_cluster;
    if (!meta) return `${n.name}: /jsz has no meta_cluster yet`;
    if (!meta.leader) return `${n.name}: no JetStream meta leader yet`;
    if (!names.has(meta.leader)) {
      return `${n.name}: meta leader is ${meta.leader}, which is not running`;
    }
    if (leader !== undefined && meta.leader !== leader) {
      return `${n.name} sees meta leader ${meta.leader}, another node sees ${leader}`;
    }
    leader = meta.leader;
    if ((meta.cluster_size ?? 0) < size) {
      return `${n.name}: meta cluster size ${meta.cluster_size}, expected ${size}`;
    }
    if (n.name === leader) {
      // the leader's replicas: every other running node, current
      const current = new Set(
        (meta.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name),
      );
      for (const other of names) {
        if (other !== leader && !current.has(other)) {
          return `meta leader ${leader}: peer ${other} not current yet`;
        }
      }
    }
    const routez = await monitor<{ num_routes?: number }>(n.monitorPort, "/routez");
    if ((routez?.num_routes ?? 0) < up.length - 1) {
      return `${n.name}: ${routez?.num_routes ?? 0} routes, expected ${up.length - 1}`;
    }
  }
  return "";
}
