/**
 * `trace publish` feeding a real running monitor (`startMonitor`, a real
 * nats-server): the demo example's trace, published by the CLI, raises in
 * serve exactly the alerts that offline `replay` raises for the same trace
 * (field for field, the alert time aside: serve stamps the wall clock).
 */
import assert from "node:assert/strict";
import { startNatsServer } from "../src/bus/nats_server.ts";
import type { Alert } from "../src/core/alert.ts";
import { runTraceCommand } from "../src/cli/trace.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { writeExample } from "../src/demo/example_trace.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import { loadOfflineMonitor } from "../src/traces/offline.ts";
import { replayTrace } from "../src/traces/replay.ts";
import { readAlerts, waitUntil } from "./helpers/stream.ts";

const POLICIES = new URL("../policies/demo.yaml", import.meta.url).pathname;
const TIME = "2025-01-01T00:00:00.000Z";

Deno.test("trace publish into a running monitor: the alerts replay gives offline for the same trace", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "lw-publish-monitor-" });
  try {
    await writeExample(dir, POLICIES);
    const trace = `${dir}/demo.trace.gz`;
    await Deno.writeTextFile(
      `${dir}/monitor.yaml`,
      (await Deno.readTextFile(`${dir}/monitor.yaml`)) +
        `nats:\n  url: ${server.url}\nalerts:\n  stream: TRACE_PUBLISH\n` +
        `batching:\n  max_batch_tokens: 32\n  max_wait_ms: 2\n`,
    );
    const config = await loadMonitorConfig(`${dir}/monitor.yaml`);

    const offline = await loadOfflineMonitor(config);
    const replayed: Alert[] = [];
    let frames = 0;
    try {
      const stats = await replayTrace(offline, trace, { onAlert: (a) => replayed.push(a) });
      frames = stats.records;
    } finally {
      await offline.close();
    }
    assert.ok(replayed.length >= 3, `replay raised ${replayed.length} alerts`);

    const monitor = await startMonitor(config, {
      spoolDir: `${dir}/spool`,
      stateDir: dir,
      log: new Logger({ quiet: true }),
      controlListen: null,
    });
    try {
      const code = await runTraceCommand([
        "publish",
        trace,
        "--url",
        server.url,
        "--rate",
        "1000",
        "--quiet",
      ]);
      assert.equal(code, 0);
      await waitUntil(
        () => monitor.telemetry.total("latentwatch.frames.received") >= frames,
        `${frames} frames received`,
      );
      await monitor.pipeline.idle();
      await waitUntil(
        async () => (await readAlerts(server.url, "TRACE_PUBLISH")).length >= replayed.length,
        `${replayed.length} alerts`,
      );
    } finally {
      await monitor.stop();
    }
    assert.equal(monitor.telemetry.total("latentwatch.frames.received"), frames);
    const served = (await readAlerts(server.url, "TRACE_PUBLISH")).map((s) => s.alert);
    const plain = (alerts: Alert[]) =>
      alerts.map((a) => JSON.parse(JSON.stringify({ ...a, time: TIME })) as Alert)
        .sort((a, b) => a.id.localeCompare(b.id));
    assert.deepStrictEqual(plain(served), plain(replayed));
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
