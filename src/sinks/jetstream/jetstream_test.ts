import assert from "node:assert/strict";
import type { Alert } from "../../core/alert.ts";
import { MemoryBus } from "../../bus/memory_bus.ts";
import { Logger } from "../../shared/log.ts";
import { JetStreamSink } from "./sink.ts";

/** The in-process bus with a switch: down, every publish goes to the spool. */
class SwitchBus extends MemoryBus {
  up = false;
  override get connected(): boolean {
    return this.up && super.connected;
  }
}

function alert(i: number): Alert {
  return { id: `a${i}`, policy: { id: "r" }, requestId: `q${i}` } as unknown as Alert;
}

async function waitUntil(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("jetstream sink: a failing spool is logged and counted, the sink keeps running", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-sink-" });
  const bus = new SwitchBus();
  const logs: string[] = [];
  const sink = new JetStreamSink(bus, {
    subject: "alerts.t",
    stream: { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 },
    spoolDir: `${dir}/spool`,
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    pollMs: 5,
    log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 }),
  });
  try {
    await sink.start();
    for (let i = 0; i < 3; i++) assert.ok(sink.submit(alert(i)));
    assert.equal(sink.stats.spoolPending, 3, "NATS down: the alerts wait in the spool");
    // the spool loses its segment under the sink; the replay round reading it fails
    for (const e of Deno.readDirSync(`${dir}/spool`)) {
      if (e.name.endsWith(".log")) Deno.removeSync(`${dir}/spool/${e.name}`);
    }
    bus.up = true;
    await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
    await waitUntil(() => sink.stats.spoolErrors >= 2, "two failed replay rounds");
    const failed = logs.filter((l) => l.includes("alert.spool_replay_failed"));
    assert.ok(failed.length >= 2, `the failure is logged, found ${logs.join("\n")}`);
    assert.match(failed[0], /^error /);
    assert.match(failed[0], /No such file|not found|os error 2/i, "with the reason");
    assert.ok(sink.stats.retries >= 2, "and counted as retries");

    // still running: a new alert is delivered while the replay keeps retrying
    assert.ok(sink.submit(alert(9)));
    await waitUntil(() => sink.stats.delivered === 1, "the new alert delivered");
    assert.deepEqual(bus.streamMessages("A").map((m) => m.headers["Nats-Msg-Id"]), ["a9"]);
  } finally {
    await sink.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("jetstream sink with a rendering: spooled native, published rendered with its own msg id", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-render-" });
  const bus = new SwitchBus();
  const stream = { name: "A", subjects: ["render.t"], duplicateWindowMs: 60_000 };
  const sink = new JetStreamSink(bus, {
    subject: "render.t",
    stream,
    spoolDir: `${dir}/spool`,
    initialBackoffMs: 10,
    pollMs: 5,
    rendering: {
      id: "upper",
      contentType: "text/plain",
      render: (a) => {
        if (a.requestId === "bad") throw new Error("cannot render");
        return new TextEncoder().encode(a.id.toUpperCase());
      },
    },
  });
  try {
    await sink.start();
    assert.ok(sink.submit(alert(1)), "NATS down: spooled");
    assert.equal(sink.submit({ ...alert(2), requestId: "bad" }), false, "unrenderable: dropped");
    assert.deepEqual(sink.stats.dropped, { render_failed: 1 });
    bus.up = true;
    await bus.ensureStream(stream);
    await waitUntil(() => sink.stats.spoolReplayed === 1, "the spooled alert replayed");
    assert.ok(sink.submit(alert(3)), "NATS up: from memory");
    await waitUntil(() => sink.stats.delivered === 2, "both published");
    const got = bus.streamMessages("A").map((m) => [
      new TextDecoder().decode(m.data),
      m.headers["Nats-Msg-Id"],
      m.headers["Content-Type"],
    ]);
    assert.deepEqual(got, [["A1", "a1:upper", "text/plain"], ["A3", "a3:upper", "text/plain"]]);
  } finally {
    await sink.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("jetstream sink: a failed fdatasync keeps the alerts accepted, published once each, no drop counted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-sync-" });
  const bus = new SwitchBus();
  bus.up = true;
  await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
  const logs: string[] = [];
  let syncs = 0;
  const sink = new JetStreamSink(bus, {
    subject: "alerts.t",
    stream: { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 },
    spoolDir: `${dir}/spool`,
    spool: {
      fsync: "batch",
      syncData: () => {
        syncs++;
        throw new Error("EIO: fdatasync failed");
      },
    },
    initialBackoffMs: 10,
    maxBackoffMs: 50,
    pollMs: 5,
    log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 }),
  });
  try {
    await sink.start();
    const results = sink.persist([alert(0), alert(1), alert(2)]);
    assert.equal(syncs, 1, "one fdatasync for the batch, and it failed");
    assert.deepEqual(
      results,
      [true, true, true],
      "written: accepted, as durable as a process crash",
    );
    await waitUntil(
      () => sink.stats.delivered === 3 && sink.stats.spoolPending === 0,
      "the three delivered and acknowledged",
    );
    await new Promise((r) => setTimeout(r, 100)); // a replay round that would resend them
    const ids = bus.streamMessages("A").map((m) => m.headers["Nats-Msg-Id"]);
    assert.deepEqual(ids, ["a0", "a1", "a2"]);
    assert.equal(sink.stats.duplicate, 0, "never published twice (memory and replay)");
    assert.deepEqual(sink.stats.dropped, {}, "no drop counted for an alert a sink sees");
    assert.equal(sink.stats.spoolUnsynced, 3);
    assert.ok(
      logs.some((l) =>
        l.startsWith("error alert.spool_sync_failed") && l.includes("alerts=3") &&
        l.includes("EIO")
      ),
      logs.join("\n"),
    );
  } finally {
    await sink.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});
