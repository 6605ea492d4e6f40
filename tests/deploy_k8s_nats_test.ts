/**
 * deploy/k8s/nats.yaml's nats.conf forms a cluster as written: three real
 * nats-servers on loopback, each started with that file and the Secret's
 * accounts.conf as nats-0..2 would (`POD_NAME`, the passwords as env), with
 * only the addresses moved to free loopback ports (the pods' DNS names do not
 * resolve here). Each sees two routes, JetStream elects a meta leader (the
 * `/healthz` the readiness probe asks turns ok), and a client given only one
 * server, as the sidecar is given the `nats` Service, logs in as `latentwatch`
 * and learns the other two from the cluster.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { findNatsServer, freePort } from "../src/bus/nats_server.ts";
import { find, loadManifests } from "./helpers/k8s_manifests.ts";

const K8S = fileURLToPath(new URL("../deploy/k8s", import.meta.url));
const natsServer = await findNatsServer();

/** `text` with `from` replaced by `to`, which must occur (the test follows the file). */
function moved(text: string, from: string | RegExp, to: string): string {
  const out = text.replace(from, to);
  assert.notEqual(out, text, `nats.conf no longer has ${from}`);
  return out;
}

/** GET `url` as JSON, or null when nothing answers. */
async function getJson(url: string): Promise<Record<string, unknown> | null> {
  try {
    const res = await fetch(url);
    return await res.json();
  } catch {
    return null;
  }
}

Deno.test({
  name: "k8s: nats.conf forms a 3-node JetStream cluster; a client learns the servers",
  ignore: natsServer === null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const all = await loadManifests(K8S);
    const conf: string = find(all, "ConfigMap", "nats-config")!.data["nats.conf"];
    const secret: Record<string, string> = find(all, "Secret", "latentwatch-nats")!.stringData;
    const sts = find(all, "StatefulSet", "nats")!;
    const n: number = sts.spec.replicas;
    assert.equal(n, 3);
    const dir = await Deno.makeTempDir({ prefix: "lw-k8s-cluster-" });
    await Deno.writeTextFile(`${dir}/accounts.conf`, secret["accounts.conf"]);
    let cluster: Cluster | null = null;
    try {
      // a free port can be taken by a parallel test before nats-server binds it: then that
      // node exits at start ("address already in use") and the cluster starts again elsewhere
      for (let attempt = 1; cluster === null; attempt++) {
        const started = await startCluster({ conf, secret, sts, n, dir });
        const failed = await untilFormed(started, n);
        if (failed === null) cluster = started;
        else {
          await stopCluster(started);
          if (!/address already in use/i.test(failed.stderr) || attempt === 3) {
            throw new Error(`nats-server on ${failed.port}: ${failed.detail}\n${failed.stderr}`);
          }
        }
      }
      const ports = cluster.ports;
      // the sidecar's login, one server given: the others come from the cluster
      const nc = await connect({
        servers: `nats://127.0.0.1:${ports[0].client}`,
        user: "latentwatch",
        pass: secret.LATENTWATCH_NATS_PASSWORD,
      });
      try {
        const urls = (nc.info?.connect_urls ?? []).map((u) => Number(u.split(":").pop()));
        assert.deepEqual(urls.sort(), ports.map((p) => p.client).sort());
      } finally {
        await nc.close();
      }
    } finally {
      if (cluster) await stopCluster(cluster);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

interface Node {
  proc: Deno.ChildProcess;
  exited: boolean;
  stderr: string;
}

interface Cluster {
  ports: { client: number; cluster: number; monitor: number }[];
  nodes: Node[];
}

/** Start `n` nodes from `conf`, moved to free loopback ports, as the StatefulSet's pods would be. */
// deno-lint-ignore no-explicit-any
async function startCluster(o: { conf: string; secret: any; sts: any; n: number; dir: string }) {
  const { conf, secret, sts, n, dir } = o;
  const ports = Array.from({ length: n }, () => ({
    client: freePort(),
    cluster: freePort(),
    monitor: freePort(),
  }));
  const nodes: Node[] = [];
  for (let i = 0; i < n; i++) {
    let text = moved(conf, /^listen: 0\.0\.0\.0:4222$/m, `listen: 127.0.0.1:${ports[i].client}`);
    text = moved(text, /^http: 0\.0\.0\.0:8222$/m, `http: 127.0.0.1:${ports[i].monitor}`);
    text = moved(
      text,
      /^(\s+)listen: 0\.0\.0\.0:6222$/m,
      `$1listen: 127.0.0.1:${ports[i].cluster}`,
    );
    text = moved(
      text,
      "store_dir: /data/jetstream",
      `store_dir: ${dir}/js-${i}-${ports[i].client}`,
    );
    for (let j = 0; j < n; j++) {
      const host = `nats-${j}.nats-headless.latentwatch.svc.cluster.local:6222`;
      text = moved(text, `nats-route://${host}`, `nats-route://127.0.0.1:${ports[j].cluster}`);
    }
    await Deno.writeTextFile(`${dir}/nats-${i}.conf`, text);
    const env: Record<string, string> = { POD_NAME: `${sts.metadata.name}-${i}` };
    for (const [k, v] of Object.entries(secret)) if (k !== "accounts.conf") env[k] = v as string;
    // the manifest's literal values too (GODEBUG), as the kubelet would set them
    // deno-lint-ignore no-explicit-any
    const container = sts.spec.template.spec.containers.find((c: any) => c.name === "nats");
    if (!container) {
      throw new Error(
        "deploy/k8s/nats.yaml: expected a container named nats in the StatefulSet, found none",
      );
    }
    for (const e of container.env ?? []) {
      if (typeof e.value === "string") env[e.name] = e.value;
    }
    const proc = new Deno.Command(natsServer!, {
      args: ["-c", `${dir}/nats-${i}.conf`],
      env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const node: Node = { proc, exited: false, stderr: "" };
    proc.status.then(() => node.exited = true);
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of proc.stderr) {
        node.stderr = (node.stderr + dec.decode(chunk)).slice(-4000);
      }
    })().catch(() => {});
    nodes.push(node);
  }
  return { ports, nodes };
}

/**
 * Wait (20 s at most) until every node routes to the other two and JetStream has a meta leader
 * (the readiness probe's `/healthz`); null then, or the first node that exited or never got there.
 */
async function untilFormed(
  c: Cluster,
  n: number,
): Promise<{ port: number; detail: string; stderr: string } | null> {
  const deadline = Date.now() + 20_000;
  for (const [i, p] of c.ports.entries()) {
    const base = `http://127.0.0.1:${p.monitor}`;
    while (true) {
      const exited = c.nodes.find((node) => node.exited);
      if (exited) {
        await new Promise((r) => setTimeout(r, 100)); // the rest of its stderr
        return { port: p.client, detail: "exited at start", stderr: exited.stderr };
      }
      const health = await getJson(`${base}/healthz`);
      const routes = await getJson(`${base}/routez`);
      if (health?.status === "ok" && routes?.num_routes === n - 1) break;
      if (Date.now() > deadline) {
        return {
          port: p.client,
          detail: JSON.stringify({ health, routes }),
          stderr: c.nodes[i].stderr,
        };
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return null;
}

/** SIGTERM every node still running and wait for all of them. */
async function stopCluster(c: Cluster): Promise<void> {
  for (const node of c.nodes) {
    try {
      node.proc.kill("SIGTERM");
    } catch {
      // it already exited
    }
    await node.proc.status;
  }
}
if (natsServer === null) console.error("k8s: nats-server not installed: cluster test skipped");
