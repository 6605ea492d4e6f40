/**
 * The JetStream sink's memory queue against a real nats-server: its alerts
 * acknowledged by the stream (each `Nats-Msg-Id` once, one already there
 * counted as a duplicate), a spool record acknowledged once the stream has
 * its alert, an ack that does not come in time or a broker that went away
 * (the server stopped) sending the queue to the spool, and what is left at
 * shutdown without a spool dropped.
 */
import assert from "node:assert/strict";
import type { Alert } from "../../core/alert.ts";
import type { Bus } from "../../bus/bus.ts";
import { readAlerts, waitUntil, withBroker } from "../../../tests/helpers/stream.ts";
import { Spool } from "../spool.ts";
import { JetStreamAccounting } from "./accounting.ts";
import { MemoryQueue } from "./memory_queue.ts";
import { StreamPublisher } from "./publisher.ts";
import { type Item, newSinkStats } from "./types.ts";

const stream = { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 };

/** A memory queue on `bus` with the settings the sink would give it, and its counters. */
function memoryQueue(bus: Bus, spool: Spool | null = null) {
  const stats = newSinkStats();
  const o = { subject: "alerts.t", stream, maxQueue: 2, maxInFlight: 1 };
  const replaying = new Set<string>();
  let wakes = 0;
  const memory = new MemoryQueue({
    bus,
    publisher: new StreamPublisher(bus, o),
    acct: new JetStreamAccounting("jetstream", stats, o),
    o: { ...o, initialBackoffMs: 10, maxBackoffMs: 50 },
    stats,
    replaying,
    spool: () => spool,
    stopping: () => false,
    gauge: () => {},
    wake: () => wakes++,
  });
  return { memory, stats, replaying, wakes: () => wakes };
}

function item(i: number): Item {
  const alert = { id: `a${i}`, policy: { id: "r" }, requestId: `q${i}` } as unknown as Alert;
  const data = new TextEncoder().encode(JSON.stringify(alert));
  return { alert, data, payload: data, firstAttemptMs: 0, backed: false };
}

/** A spool in a temporary folder, closed and removed after `body`. */
async function withSpool(body: (spool: Spool) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-memory-" });
  const spool = Spool.open(dir);
  try {
    await body(spool);
  } finally {
    spool.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The `Nats-Msg-Id`s stream A holds, in order. */
async function storedIds(url: string): Promise<string[]> {
  return (await readAlerts(url, "A")).map((m) => m.msgId);
}

Deno.test("memory queue: a volatile alert is told once the stream has it", () =>
  withBroker(async ({ server, bus }) => {
    await bus.ensureStream(stream);
    const { memory, stats } = memoryQueue(bus);
    assert.ok(memory.hasRoom() && memory.hasRoomForVolatile());
    const durable = [memory.pushVolatile(item(1)), memory.pushVolatile(item(2))];
    assert.equal(memory.size, 2);
    assert.equal(memory.hasRoomForVolatile(), false, "maxQueue 2: full");
    memory.pump();
    assert.deepEqual(await Promise.all(durable), [true, true]);
    assert.equal(memory.size, 0);
    assert.equal(memory.volatile, 0);
    assert.equal(stats.delivered, 2);
    assert.equal(stats.duplicate, 0);
    assert.deepEqual(await storedIds(server.url), ["a1", "a2"]);
  }));

Deno.test("memory queue: an alert the stream has already (its Nats-Msg-Id) is durable, counted as a duplicate, stored once", () =>
  withBroker(async ({ server, bus }) => {
    await bus.ensureStream(stream);
    const { memory, stats } = memoryQueue(bus);
    const first = memory.pushVolatile(item(1));
    memory.pump();
    assert.equal(await first, true);
    const again = memory.pushVolatile(item(1)); // the same alert, published once more
    memory.pump();
    assert.equal(await again, true, "the stream has it: durable");
    assert.equal(stats.delivered, 1);
    assert.equal(stats.duplicate, 1);
    assert.deepEqual(await storedIds(server.url), ["a1"]);
  }));

Deno.test("memory queue: an alert written ahead has its spool record acknowledged once the stream has it", () =>
  withBroker(({ server, bus }) =>
    withSpool(async (spool) => {
      await bus.ensureStream(stream);
      const { memory, stats, replaying, wakes } = memoryQueue(bus, spool);
      const backed = { ...item(1), backed: true };
      assert.ok(spool.append({ id: "a1", data: backed.data, firstAttemptMs: 0 }).ok);
      memory.pushBacked(backed);
      assert.deepEqual([...replaying], ["a1"], "the replay loop skips it while it is here");
      assert.equal(memory.volatile, 0);
      memory.pump();
      await waitUntil(() => memory.size === 0, "the publish acknowledged", 5_000);
      assert.equal(spool.pending, 0, "the spool record acknowledged");
      assert.deepEqual([...replaying], []);
      assert.equal(stats.delivered, 1);
      assert.equal(stats.spooled, 0, "written ahead by the sink, not by the queue");
      assert.equal(wakes(), 0, "nothing left to the replay loop");
      assert.deepEqual(await storedIds(server.url), ["a1"]);
    })
  ));

Deno.test("memory queue: an ack that does not come in time sends a volatile alert to the spool", () =>
  withBroker(({ server, bus }) =>
    withSpool(async (spool) => {
      await bus.ensureStream(stream);
      const { memory, stats, wakes } = memoryQueue(bus, spool);
      // connected, but the server answers nothing: the publish ack times out (500 ms)
      server.signal("SIGSTOP");
      assert.equal(bus.connected, true);
      const durable = memory.pushVolatile(item(1));
      memory.pump();
      assert.equal(await durable, true, "durable: in the spool");
      assert.equal(stats.retries, 1);
      assert.equal(stats.spooled, 1);
      assert.equal(stats.delivered, 0);
      assert.equal(spool.pending, 1);
      assert.ok(wakes() >= 1, "the replay loop woken");
      await waitUntil(() => memory.size === 0, "the publish to end", 5_000);
      assert.equal(memory.volatile, 0);
    })
  ));

Deno.test("memory queue: NATS away, the queue goes to the spool and wakes the replay", () =>
  withBroker(({ bus, away }) =>
    withSpool(async (spool) => {
      await bus.ensureStream(stream);
      await away();
      const { memory, stats, wakes } = memoryQueue(bus, spool);
      assert.equal(memory.hasRoom(), false, "no publishing from memory while NATS is away");
      assert.equal(memory.hasRoomForVolatile(), false, "with a spool, the sink writes to it");
      const durable = memory.pushVolatile(item(1));
      memory.pump();
      assert.equal(await durable, true, "durable: in the spool");
      assert.equal(spool.pending, 1);
      assert.equal(stats.spooled, 1);
      assert.equal(stats.retries, 0, "no publish tried");
      assert.equal(memory.size, 0);
      assert.ok(wakes() >= 1);
    })
  ));

Deno.test("memory queue: at shutdown without a spool what is left is dropped and counted", () =>
  withBroker(async ({ bus }) => {
    const { memory, stats } = memoryQueue(bus);
    const durable = memory.pushVolatile(item(1));
    assert.deepEqual(memory.release(), { left: 1, lost: 1 });
    assert.equal(await durable, false);
    assert.deepEqual(stats.dropped, { shutdown: 1 });
    assert.equal(memory.size, 0);
    assert.equal(memory.volatile, 0);
  }));
