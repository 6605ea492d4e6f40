/**
 * A hot reload of a large policy set must not stall the sidecar: the files
 * are read and compiled off the event loop, so `/healthz` answers quickly
 * all the while. The set is a chain of 2,000 macros (which the old
 * in-thread, cubic compiler took about 15 s over) and 2,000 plain rules.
 */
import assert from "node:assert/strict";
import { MemoryBus } from "../src/bus/memory_bus.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { macroChainYaml } from "../src/core/policy/test_helpers.ts";
import { buildDemoSae, SimulatedModel } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import { WORKER_READY } from "../src/serve/policy_compiler.ts";

const D_SAE = 256;

function plainRules(n: number): string {
  const lines = ["version: 2", "rules:"];
  for (let i = 0; i < n; i++) {
    lines.push(
      `  - id: plain-${i}`,
      `    title: plain ${i}`,
      "    severity: low",
      `    when: { all: [{ sae: sim, latent: ${i % D_SAE}, pool: { max: 4 }, above: 2 }, ` +
        `{ not: { sae: sim, latent: ${(i + 1) % D_SAE}, above: 5 } }] }`,
    );
  }
  return lines.join("\n") + "\n";
}

Deno.test("reload of a large policy set: /healthz stays under 500 ms throughout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-reload-latency-" });
  const sim = new SimulatedModel({ dModel: 32, seed: 5 });
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, D_SAE));
  await Deno.writeTextFile(`${dir}/chain.yaml`, "version: 2\nrules: []\n");
  await Deno.writeTextFile(`${dir}/plain.yaml`, "version: 2\nrules: []\n");
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    "monitor: latency\nmodel: sim\nhook: h\nsaes:\n  - id: sim\n    path: sae\n" +
      "policies: [chain.yaml, plain.yaml]\nnats:\n  url: nats://127.0.0.1:1\n" +
      "alerts:\n  stream: LATENCY\ncontrol:\n  listen: 127.0.0.1:0\n",
  );
  const bus = new MemoryBus();
  const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
    bus,
    spoolDir: `${dir}/spool`,
    log: new Logger({ write: () => {}, maxPerSecond: 10_000 }),
    controlListen: "127.0.0.1:0",
  });
  try {
    const url = `http://127.0.0.1:${monitor.controlAddr!.port}/healthz`;
    assert.equal(await (await fetch(url)).text(), "ok");
    await Deno.writeTextFile(
      `${dir}/chain.yaml`,
      macroChainYaml(2000, { sae: "sim", dSae: D_SAE }),
    );
    await Deno.writeTextFile(`${dir}/plain.yaml`, plainRules(2000));

    const t0 = performance.now();
    let done = false;
    const reload = monitor.reload().finally(() => done = true);
    const latencies: number[] = [];
    while (!done) {
      const s = performance.now();
      const res = await fetch(url);
      assert.equal(await res.text(), "ok");
      latencies.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 20));
    }
    const result = await reload;
    const reloadMs = performance.now() - t0;
    assert.deepEqual(result, { ok: true, rules: 2001 });
    const max = Math.max(...latencies);
    console.log(
      `reload of 2,000 chained macros + 2,000 rules: ${reloadMs.toFixed(0)} ms; ` +
        `${latencies.length} /healthz polls, max ${max.toFixed(1)} ms`,
    );
    assert.ok(latencies.length >= 3, `only ${latencies.length} polls during the reload`);
    assert.ok(max < 500, `/healthz took ${max.toFixed(0)} ms during the reload`);
    assert.equal(monitor.pipeline.generation.policies.rules.length, 2001);
  } finally {
    await monitor.stop();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reload whose worker hangs or crashes: refused (at the timeout), rules kept, stop() never waits for it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-reload-hang-" });
  const sim = new SimulatedModel({ dModel: 32, seed: 5 });
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, D_SAE));
  await Deno.writeTextFile(`${dir}/rules.yaml`, plainRules(3));
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    "monitor: hang\nmodel: sim\nhook: h\nsaes:\n  - id: sim\n    path: sae\n" +
      "policies: [rules.yaml]\nnats:\n  url: nats://127.0.0.1:1\nalerts:\n  stream: HANG\n",
  );
  // a stand-in worker: loads, then answers one compile by crashing, and never answers the next
  await Deno.writeTextFile(
    `${dir}/worker.js`,
    `self.postMessage(${JSON.stringify(WORKER_READY)});\n` +
      `self.onmessage = (e) => { if (e.data.id === 0) throw new Error("worker blew up"); };\n`,
  );
  const logs: string[] = [];
  const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
    bus: new MemoryBus(),
    spoolDir: `${dir}/spool`,
    log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 10_000 }),
    controlListen: null,
    policyCompiler: { workerUrl: new URL(`file://${dir}/worker.js`), timeoutMs: 400 },
  });
  try {
    const rules = monitor.pipeline.generation.policies.rules.map((r) => r.id);
    assert.deepEqual(rules, ["plain-0", "plain-1", "plain-2"]);
    const crashed = await monitor.reload();
    assert.equal(crashed.ok, false);
    assert.match((crashed as { error: string }).error, /worker blew up/);
    const t0 = performance.now();
    const timedOut = await monitor.reload();
    assert.equal(timedOut.ok, false);
    assert.match((timedOut as { error: string }).error, /no answer in 400 ms/);
    assert.ok(performance.now() - t0 < 5_000);
    assert.deepEqual(
      monitor.pipeline.generation.policies.rules.map((r) => r.id),
      rules,
      "the running rules stay",
    );
    assert.ok(
      logs.some((l) => l.includes("policies.reload_refused") && l.includes("reason=worker_failed")),
      logs.join("\n"),
    );
    assert.ok(logs.some((l) => l.includes("reason=worker_timeout")));
    assert.ok(!logs.some((l) => l.includes("worker_unavailable")), "never compiled in-thread");
  } finally {
    // a reload in flight (the worker hangs again) must not hold the stop
    const pending = monitor.reload();
    const t0 = performance.now();
    await monitor.stop();
    const stopMs = performance.now() - t0;
    const result = await pending;
    await Deno.remove(dir, { recursive: true });
    assert.ok(stopMs < 300, `stop() waited ${stopMs.toFixed(0)} ms for a hanging compile`);
    assert.equal(result.ok, false);
  }
});
