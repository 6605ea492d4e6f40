import assert from "node:assert/strict";
import type { Alert } from "../../core/alert.ts";
import { MemoryBus } from "../../bus/memory_bus.ts";
import { Spool } from "../spool.ts";
import { JetStreamAccounting } from "./accounting.ts";
import { MemoryQueue } from "./memory_queue.ts";
import { StreamPublisher } from "./publisher.ts";
import { type Item, newSinkStats } from "./types.ts";

const stream = { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 };

/** A memory queue on `bus` with the settings the sink would give it, and its counters. */
function memoryQueue(bus: MemoryBus, spool: Spool | null = null) {
  const stats = newSinkStats();
  const o = { subject: "alerts.t", stream, maxQueue: 2, maxInFlight: 1 };
  let wakes = 0;
  const memory = new MemoryQueue({
    bus,
    publisher: new StreamPublisher(bus, o),
    acct: new JetStreamAccounting("jetstream", stats, o),
    o: { ...o, initialBackoffMs: 10, maxBackoffMs: 50 },
    stats,
    replaying: new Set(),
    spool: () => spool,
    stopping: () => false,
    gauge: () => {},
    wake: () => wakes++,
  });
  return { memory, stats, wakes: () => wakes };
}

function item(i: number): Item {
  const alert = { id: `a${i}`, policy: { id: "r" }, requestId: `q${i}` } as unknown as Alert;
  const data = new TextEncoder().encode(JSON.stringify(alert));
  return { alert, data, payload: data, firstAttemptMs: 0, backed: false };
}

Deno.test("memory queue: a volatile alert is told once the stream has it", async () => {
  const bus = new MemoryBus();
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
  assert.deepEqual(bus.streamMessages("A").map((m) => m.headers["Nats-Msg-Id"]), ["a1", "a2"]);
  await bus.close();
});

Deno.test("memory queue: NATS away, the queue goes to the spool and wakes the replay", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-memory-" });
  const spool = Spool.open(dir);
  const bus = new MemoryBus();
  await bus.close();
  try {
    const { memory, stats, wakes } = memoryQueue(bus, spool);
    assert.equal(memory.hasRoom(), false, "no publishing from memory while NATS is away");
    const durable = memory.pushVolatile(item(1));
    memory.pump();
    assert.equal(await durable, true, "durable: in the spool");
    assert.equal(spool.pending, 1);
    assert.equal(stats.spooled, 1);
    assert.ok(wakes() >= 1);
  } finally {
    spool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("memory queue: at shutdown without a spool what is left is dropped and counted", async () => {
  const bus = new MemoryBus();
  const { memory, stats } = memoryQueue(bus);
  const durable = memory.pushVolatile(item(1));
  assert.deepEqual(memory.release(), { left: 1, lost: 1 });
  assert.equal(await durable, false);
  assert.deepEqual(stats.dropped, { shutdown: 1 });
  assert.equal(memory.size, 0);
  await bus.close();
});
