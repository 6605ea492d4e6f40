import assert from "node:assert/strict";
import { ALERT, MINIMAL, NASTY } from "../core/render/test_alert.ts";
import { parseMonitorConfig } from "../config/monitor.ts";
import { MemoryBus } from "../bus/memory_bus.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { startFrameReceiver, startHttpReceiver } from "../../tests/helpers/receivers.ts";
import { waitUntil } from "../../tests/helpers/stream.ts";
import { createSinks, SinkSetupError } from "./factory.ts";
import { FileSink } from "./file/sink.ts";
import type { JetStreamSink } from "./jetstream/sink.ts";
import { StdoutSink } from "./stdout/sink.ts";
import { toJson } from "../core/render/json.ts";

const log = new Logger({ quiet: true, write: () => {} });
const HEAD = "monitor: demo\nmodel: m\nhook: h\nsaes: [{id: s, path: ./s}]\npolicies: [./p.yaml]\n";

Deno.test("createSinks: one sink per entry, named as configured; token_env read", async () => {
  const dir = await Deno.makeTempDir();
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n" +
      "  - { type: syslog, address: 127.0.0.1:6514, format: cef }\n" +
      "  - { type: webhook, url: 'http://127.0.0.1:9/', shape: splunk-hec, token_env: T }\n" +
      "  - { type: stdout }\n" +
      "  - { type: file, path: a.jsonl }\n",
    `${dir}/m.yaml`,
  );
  const sinks = createSinks(cfg.sinks, { log, env: (n) => n === "T" ? "tok" : undefined });
  assert.deepEqual(sinks.map((s) => s.name), [
    "syslog:127.0.0.1:6514",
    "webhook:127.0.0.1:9",
    "stdout",
    "file:a.jsonl",
  ]);
  for (const s of sinks) await s.close();
  assert.throws(() => createSinks(cfg.sinks, { log, env: () => undefined }), (err: Error) => {
    assert.ok(err instanceof SinkSetupError);
    assert.equal(
      err.message,
      `${dir}/m.yaml:8:5: sink webhook:127.0.0.1:9: expected environment variable T to hold ` +
        "the token, found it unset",
    );
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a dead sink slows neither the caller nor the other sinks", async () => {
  const hang = startHttpReceiver(() => "hang");
  const rx = startFrameReceiver();
  const dir = await Deno.makeTempDir();
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n" +
      `  - { type: webhook, url: '${hang.url}', timeout_ms: 200, max_queue: 5, max_attempts: 2 }\n` +
      `  - { type: syslog, address: 127.0.0.1:${rx.port} }\n` +
      `  - { type: file, path: out.jsonl }\n`,
    `${dir}/m.yaml`,
  );
  const [dead, syslog, file] = createSinks(cfg.sinks, { log, hostname: "lw-test" });
  try {
    await Promise.all([dead.start(), syslog.start(), file.start()]);
    const n = 50;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const a = { ...ALERT, id: `a${i}` };
      dead.submit(a);
      syslog.submit(a);
      file.submit(a);
    }
    assert.ok(performance.now() - t0 < 200, "submitting never waits on a sink");
    await waitUntil(() => rx.messages.length === n, `${n} frames at the syslog receiver`, 5000);
    assert.equal(await file.drain(2000), 0);
    const lines = (await Deno.readTextFile(`${dir}/out.jsonl`)).trimEnd().split("\n");
    assert.equal(lines.length, n);
    assert.ok(performance.now() - t0 < 1000, "the others finished while the webhook hung");
    // the dead one kept 5 and dropped the rest at once
    assert.equal(dead.stats.dropped.queue_full, n - 5);
    assert.equal(dead.stats.delivered, 0);
    assert.equal(await dead.drain(50) + (dead.stats.dropped.retries_exhausted ?? 0), 5);
  } finally {
    for (const s of [dead, syslog, file]) await s.close();
    await hang.close();
    await rx.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("StdoutSink: one JSON line per alert, in order; ocsf format", async () => {
  const chunks: Uint8Array[] = [];
  const writer = { write: (p: Uint8Array) => (chunks.push(p.slice()), Promise.resolve(p.length)) };
  const sink = new StdoutSink({ maxQueue: 100, timeoutMs: 1000, writer }, { log });
  for (const a of [ALERT, MINIMAL, NASTY]) sink.submit(a);
  assert.equal(await sink.drain(1000), 0);
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  assert.equal(text, [ALERT, MINIMAL, NASTY].map(toJson).join("\n") + "\n");
  const ocsf: Uint8Array[] = [];
  const s2 = new StdoutSink({
    format: "ocsf",
    maxQueue: 10,
    timeoutMs: 1000,
    writer: { write: (p) => (ocsf.push(p.slice()), Promise.resolve(p.length)) },
  }, { log });
  s2.submit(ALERT);
  await s2.drain(1000);
  assert.equal(JSON.parse(new TextDecoder().decode(ocsf[0])).class_uid, 2004);
});

Deno.test("StdoutSink: a stalled reader times out; the retry waits, never writes twice", async () => {
  let release!: () => void;
  const stalled = new Promise<void>((r) => release = r);
  const writes: string[] = [];
  const writer = {
    write: async (p: Uint8Array) => {
      writes.push(new TextDecoder().decode(p));
      if (writes.length === 1) await stalled;
      return p.length;
    },
  };
  const sink = new StdoutSink({ maxQueue: 10, timeoutMs: 50, maxAttempts: 10, writer }, { log });
  sink.submit(ALERT);
  await waitUntil(() => sink.stats.retries >= 2, "timeouts retried", 2000);
  release();
  assert.equal(await sink.drain(2000), 0);
  assert.equal(writes.length, 1, "written once");
  assert.equal(sink.stats.delivered, 1);
});

Deno.test("FileSink: appends JSONL, ends a torn last line, rotates by size keeping N", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/alerts.jsonl`;
  await Deno.writeTextFile(path, '{"torn":'); // a line cut by a crash
  const line = toJson(ALERT) + "\n";
  const sink = new FileSink({
    path,
    maxQueue: 100,
    timeoutMs: 2000,
    maxBytes: line.length * 2 + 20,
    keep: 2,
  }, { log });
  try {
    await sink.start();
    for (let i = 0; i < 6; i++) {
      sink.submit(ALERT);
      await waitUntil(() => sink.stats.delivered === i + 1, `line ${i + 1} written`, 2000);
    }
    assert.equal(await sink.drain(1000), 0);
  } finally {
    await sink.close();
  }
  const read = (f: string) => Deno.readTextFile(f).catch(() => null);
  assert.equal(await read(path), line + line);
  assert.equal(await read(`${path}.1`), line + line);
  assert.equal(await read(`${path}.2`), '{"torn":\n' + line + line);
  assert.equal(await read(`${path}.3`), null, "keep: 2");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("FileSink: an unwritable path fails at start", async () => {
  const sink = new FileSink({ path: "/nonexistent/dir/a.jsonl", maxQueue: 1, timeoutMs: 100 }, {
    log,
  });
  await assert.rejects(() => sink.start(), Deno.errors.NotFound);
  await sink.close();
});

Deno.test("createSinks: a jetstream sink needs the alert stream; without one, an error at its line", () => {
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n  - { type: jetstream, format: ecs }\n",
    "/srv/lw/m.yaml",
  );
  assert.throws(
    () => createSinks(cfg.sinks, { log }),
    (err) =>
      err instanceof SinkSetupError && err.at === "/srv/lw/m.yaml:7:5" &&
      /latentwatch\.render\.ecs\.demo/.test(err.message),
  );
});

Deno.test("createSinks: rendered jetstream sinks count drops and queue depth per sink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-render-metrics-" });
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n  - { type: jetstream, format: ecs }\n  - { type: jetstream, shape: syslog }\n",
    `${dir}/m.yaml`,
  );
  const ecs = "jetstream:latentwatch.render.ecs.demo";
  const syslog = "jetstream:latentwatch.render.syslog.demo";
  // NATS down: what each sink accepts waits in its own spool
  const down = new (class extends MemoryBus {
    override get connected(): boolean {
      return false;
    }
  })();
  // a broker whose max_payload no rendering fits in: every alert is dropped as too_large
  const tiny = new MemoryBus({ maxPayload: 16 });
  const telemetry = new Telemetry();
  const deps = (bus: MemoryBus, spoolDir: string) => ({
    log,
    hostname: "lw-test",
    jetstream: { bus, stream: "A", duplicateWindowMs: 60_000, spoolDir, telemetry },
  });
  const waiting = createSinks(cfg.sinks, deps(down, `${dir}/spool-down`));
  const dropping = createSinks(cfg.sinks, deps(tiny, `${dir}/spool-tiny`));
  try {
    for (const s of [...waiting, ...dropping]) await s.start();
    assert.deepEqual(waiting.map((s) => s.name), [ecs, syslog]);
    assert.ok(
      waiting[0].submit(ALERT) && waiting[0].submit({ ...NASTY, id: "second" }) &&
        waiting[1].submit(ALERT),
    );
    // one gauge series per sink: neither overwrites the other
    assert.equal(telemetry.value("latentwatch.alert_queue.depth", { sink: ecs }), 2);
    assert.equal(telemetry.value("latentwatch.alert_queue.depth", { sink: syslog }), 1);

    assert.equal(dropping[0].submit(ALERT), false);
    assert.equal(dropping[1].submit(ALERT), false);
    assert.equal(dropping[1].submit({ ...NASTY, id: "second" }), false);
    const dropped = (sink: string) =>
      telemetry.value("latentwatch.alerts.dropped", { reason: "too_large", sink });
    assert.deepEqual([dropped(ecs), dropped(syslog)], [1, 2], "every drop counted, by sink");
    assert.equal(telemetry.total("latentwatch.alerts.dropped"), 3);
  } finally {
    for (const s of [...waiting, ...dropping]) await s.close();
    await down.close();
    await tiny.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createSinks: a rendered jetstream sink's spool gets the alerts.spool settings (fsync)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-render-fsync-" });
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n  - { type: jetstream, format: ecs }\n",
    `${dir}/m.yaml`,
  );
  const bus = new MemoryBus();
  const made = (fsync?: "never" | "batch" | "always") =>
    createSinks(cfg.sinks, {
      log,
      hostname: "lw-test",
      jetstream: {
        bus,
        stream: "A",
        duplicateWindowMs: 60_000,
        spoolDir: `${dir}/spool-${fsync ?? "default"}`,
        ...(fsync ? { spool: { fsync } } : {}),
      },
    })[0] as JetStreamSink;
  try {
    for (const fsync of ["batch", "always", undefined] as const) {
      const sink = made(fsync);
      await sink.start();
      try {
        assert.equal(sink.spoolFsync, fsync ?? "never", `alerts.spool.fsync: ${fsync}`);
      } finally {
        await sink.close();
      }
    }
  } finally {
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});
