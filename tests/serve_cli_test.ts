/**
 * `latentwatch serve` as a process: clear start-up errors, a control API
 * while running, a clean exit on SIGTERM.
 */
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import assert from "node:assert/strict";
import { freePort, startNatsServer } from "../src/bus/nats_server.ts";
import { buildDemoSae, SimulatedModel } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { runLatentwatch, spawnLatentwatch } from "./helpers/cli.ts";
import { waitUntil } from "./helpers/stream.ts";

/**
 * Write a demo SAE (`sae`), a one-rule policy (`p.yaml`) and a monitor
 * (`m.yaml`) using them into `dir`: `nats` is the body of its `nats:` block,
 * its control API listens on `port`.
 */
async function writeMonitorFiles(dir: string, nats: string, port: number): Promise<void> {
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(new SimulatedModel({ dModel: 32 }), 40));
  await Deno.writeTextFile(
    `${dir}/p.yaml`,
    "version: 1\nrules:\n  - id: r\n    title: t\n    severity: low\n    when: { sae: s, latent: 0, above: 1 }\n",
  );
  await Deno.writeTextFile(
    `${dir}/m.yaml`,
    `monitor: m\nmodel: x\nhook: h\nsaes:\n  - id: s\n    path: sae\npolicies: [p.yaml]\n` +
      `nats:\n${nats}control:\n  listen: 127.0.0.1:${port}\n`,
  );
}

Deno.test("serve CLI: an invalid monitor file is refused with file:line:col and exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/m.yaml`,
      "monitor: m\nmodel: x\nhook: h\nsaes: []\npolicies: [p.yaml]\nbatching:\n  max_batch_tokens: -4\n",
    );
    const { code, stderr: err } = await runLatentwatch(["serve", "--monitor", `${dir}/m.yaml`]);
    assert.equal(code, 1);
    assert.match(err, new RegExp(`${dir}/m\\.yaml:4:7: expected a list of at least one SAE`), err);
    assert.match(err, new RegExp(`${dir}/m\\.yaml:7:21: expected an integer in 1\\.\\.4096`), err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve CLI: live before NATS, ready once connected, metrics, exits 0 on SIGTERM", async () => {
  const natsPort = freePort();
  const url = `nats://127.0.0.1:${natsPort}`;
  let server: Awaited<ReturnType<typeof startNatsServer>> | null = null;
  const dir = await Deno.makeTempDir();
  const port = freePort();
  try {
    await writeMonitorFiles(dir, `  url: ${url}\n`, port);
    const { child, stderr: errText } = spawnLatentwatch([
      "serve",
      "--monitor",
      `${dir}/m.yaml`,
      "--state-dir",
      `${dir}/state`,
    ]);
    const get = (path: string) =>
      fetch(`http://127.0.0.1:${port}${path}`).then(async (r) => ({
        status: r.status,
        body: await r.text(),
      }));
    await waitUntil(
      () => get("/healthz").then((r) => r.status === 200, () => false),
      "/healthz",
      30_000,
    );
    // no broker yet: alive, not ready
    assert.equal((await get("/readyz")).status, 503);
    server = await startNatsServer({ port: natsPort });
    await waitUntil(
      () => get("/readyz").then((r) => r.status === 200, () => false),
      "/readyz",
      30_000,
    );
    assert.match((await get("/metrics")).body, /^latentwatch_frames_received_total 0$/m);
    child.kill("SIGTERM");
    const err = await errText;
    assert.equal((await child.status).code, 0, err);
    assert.match(err, /nats\.connecting/);
    assert.match(err, /monitor\.started/);
    assert.match(err, /monitor\.stopping/);
    assert.match(err, new RegExp(`info state\\.dir dir=${dir}/state source=--state-dir`));
    // text lines start with their time
    for (const line of err.trim().split("\n")) {
      assert.match(
        line,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S/,
        line,
      );
    }
  } finally {
    await server?.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startMonitor: a failed start-up releases what it opened (the control port here)", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  try {
    await writeMonitorFiles(
      dir,
      `  url: nats://127.0.0.1:${freePort()}\n  user: lw\n  password_env: LW_TEST_UNSET_PASSWORD\n`,
      port,
    );
    Deno.env.delete("LW_TEST_UNSET_PASSWORD");
    await assert.rejects(
      async () =>
        await startMonitor(await loadMonitorConfig(`${dir}/m.yaml`), {
          stateDir: `${dir}/state`,
          log: new Logger({ quiet: true }),
        }),
      /nats\.password_env: expected environment variable LW_TEST_UNSET_PASSWORD/,
    );
    // the control API had started listening; it must be closed again
    const again = Deno.listen({ hostname: "127.0.0.1", port });
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
