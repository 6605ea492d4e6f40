/**
 * `latentwatch serve` as a process, stopped by SIGTERM in each state: while
 * still waiting for NATS (a loopback port nobody listens on) and while
 * running against a real nats-server, where `/stats` is read first. The
 * expected rule counts come from the policy files' text, not from the code.
 */
import assert from "node:assert/strict";
import { freePort, startNatsServer } from "../src/bus/nats_server.ts";
import { buildDemoSae, SimulatedModel } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { spawnLatentwatch } from "./helpers/cli.ts";
import { waitUntil } from "./helpers/stream.ts";

/** A rule on latent `latent` of SAE `s`. */
const rule = (id: string, latent: number) =>
  `  - id: ${id}\n    title: ${id}\n    severity: low\n    when: { sae: s, latent: ${latent}, above: 1 }\n`;

/** Two policy files (3 and 2 rules), an SAE and a monitor in `dir`, NATS at `url`. */
async function writeFiles(dir: string, url: string, controlPort: number): Promise<void> {
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(new SimulatedModel({ dModel: 32 }), 40));
  await Deno.writeTextFile(
    `${dir}/a.yaml`,
    `version: 1\nrules:\n${rule("a1", 0)}${rule("a2", 1)}${rule("a3", 2)}`,
  );
  await Deno.writeTextFile(`${dir}/b.yaml`, `version: 1\nrules:\n${rule("b1", 3)}${rule("b2", 4)}`);
  await Deno.writeTextFile(
    `${dir}/m.yaml`,
    `monitor: m\nmodel: x\nhook: h\nsaes:\n  - id: s\n    path: sae\npolicies: [a.yaml, b.yaml]\n` +
      `nats:\n  url: ${url}\ncontrol:\n  listen: 127.0.0.1:${controlPort}\n`,
  );
}

/** Rules in a policy file, counted from its text (`- id:` entries). */
async function countRules(path: string): Promise<number> {
  return (await Deno.readTextFile(path)).match(/^\s*- id:/gm)?.length ?? 0;
}

function spawnServe(dir: string) {
  return spawnLatentwatch(["serve", "--monitor", `${dir}/m.yaml`, "--state-dir", `${dir}/state`]);
}

const get = (port: number, path: string) => fetch(`http://127.0.0.1:${port}${path}`);

/** Lines of `log` at `level`. */
const linesAt = (log: string, level: string) =>
  log.split("\n").filter((l) => new RegExp(`^\\S+ ${level} `).test(l));

Deno.test("serve: SIGTERM while waiting for NATS stops what started, logs it, exits 0", async () => {
  const dir = await Deno.makeTempDir();
  const controlPort = freePort();
  try {
    // a free loopback port nobody listens on: the nats step waits
    await writeFiles(dir, `nats://127.0.0.1:${freePort()}`, controlPort);
    const { child, stderr } = spawnServe(dir);
    await waitUntil(
      () => get(controlPort, "/healthz").then(async (r) => (await r.text(), r.ok), () => false),
      "/healthz",
      30_000,
    );
    // waiting for NATS: rules are loaded all the same
    const stats = await (await get(controlPort, "/stats")).json();
    assert.equal(stats.nats.connected, false);
    assert.equal(stats.rules, 5);
    child.kill("SIGTERM");
    const log = await stderr;
    assert.equal((await child.status).code, 0, log);
    assert.match(log, /info monitor\.stopping signal=SIGTERM/);
    assert.match(log, /info startup\.stopped during=nats/);
    assert.match(log, /info monitor\.stopped during=start-up step=nats undelivered=0/);
    assert.equal(log.match(/monitor\.stopped/g)?.length, 1, log);
    assert.deepEqual(linesAt(log, "warn"), []);
    assert.deepEqual(linesAt(log, "error"), []);
    // the control API was stopped: its port is free again
    Deno.listen({ hostname: "127.0.0.1", port: controlPort }).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Every object key under `v` (but the metric series names under `metrics`), with its path. */
function keysOf(v: unknown, path = ""): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => keysOf(x, `${path}[${i}]`));
  if (v === null || typeof v !== "object") return [];
  return Object.entries(v).flatMap(([k, x]) => [
    `${path}.${k}`,
    ...(path === "" && k === "metrics" ? [] : keysOf(x, `${path}.${k}`)),
  ]);
}

Deno.test("serve: /stats counts the loaded rules per file in snake_case; a clean stop logs no warning", async () => {
  const natsPort = freePort();
  const server = await startNatsServer({ port: natsPort });
  const dir = await Deno.makeTempDir();
  const controlPort = freePort();
  try {
    await writeFiles(dir, server.url, controlPort);
    const { child, stderr } = spawnServe(dir);
    await waitUntil(
      () => get(controlPort, "/readyz").then(async (r) => (await r.text(), r.ok), () => false),
      "/readyz",
      30_000,
    );
    const stats = await (await get(controlPort, "/stats")).json();
    const a = await countRules(`${dir}/a.yaml`);
    const b = await countRules(`${dir}/b.yaml`);
    assert.equal(stats.rules, a + b);
    assert.deepEqual(
      stats.policies.map((
        p: { file: string; rules: number },
      ) => [p.file.split("/").pop(), p.rules]),
      [["a.yaml", a], ["b.yaml", b]],
    );
    assert.deepEqual(stats.encoders.map((e: { id: string }) => e.id), ["s"]);
    assert.equal(stats.encoders[0].provider, "cpu");
    assert.equal(stats.nats.connected, true);
    assert.equal(stats.nats.subscribed, true);
    assert.ok(
      stats.sinks.some((s: { name: string }) => s.name === "jetstream"),
      JSON.stringify(stats.sinks),
    );
    const keys = keysOf(stats);
    assert.ok(keys.includes(".sinks[0].spool_pending"), keys.join(" "));
    for (const k of keys) assert.match(k.split(".").pop()!, /^[a-z][a-z0-9_]*$/, k);
    for (const m of Object.keys(stats.metrics)) {
      assert.match(m, /^latentwatch\.[a-z0-9_.]+(\{.*\})?$/, m);
    }
    child.kill("SIGTERM");
    const log = await stderr;
    assert.equal((await child.status).code, 0, log);
    assert.match(log, /info monitor\.stopped during=running undelivered=0/);
    assert.deepEqual(linesAt(log, "warn"), []);
    assert.deepEqual(linesAt(log, "error"), []);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
