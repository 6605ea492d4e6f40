import assert from "node:assert/strict";
import type { BusMessage } from "./bus.ts";
import {
  BORROWED_FILL,
  BusClosedError,
  MaxPayloadError,
  MemoryBus,
  StreamError,
  SubjectError,
} from "./memory_bus.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

function collect(bus: MemoryBus, filter: string): string[] {
  const got: string[] = [];
  bus.subscribe(filter, (m) => got.push(m.subject));
  return got;
}

Deno.test("memory bus: wildcards match like NATS", () => {
  const bus = new MemoryBus();
  const star = collect(bus, "a.*.c");
  const tail = collect(bus, "a.>");
  const exact = collect(bus, "a.b");
  const all = collect(bus, ">");
  for (const s of ["a.b.c", "a.b", "a", "a.x.c", "a.b.c.d", "b.b.c"]) bus.publish(s, bytes());
  assert.deepEqual(star, ["a.b.c", "a.x.c"]);
  assert.deepEqual(tail, ["a.b.c", "a.b", "a.x.c", "a.b.c.d"]);
  assert.deepEqual(exact, ["a.b"]);
  assert.deepEqual(all, ["a.b.c", "a.b", "a", "a.x.c", "a.b.c.d", "b.b.c"]);
});

Deno.test("memory bus: a partial wildcard is a literal token, and bad subjects are refused", () => {
  const bus = new MemoryBus();
  const lit = collect(bus, "a.b*");
  bus.publish("a.bx", bytes());
  bus.publish("a.b*", bytes());
  assert.deepEqual(lit, ["a.b*"]);
  for (const bad of ["", "a..b", "a.", "a b", "a.*", "a.>"]) {
    assert.throws(() => bus.publish(bad, bytes()), SubjectError, bad);
  }
  assert.throws(() => bus.subscribe("a.>.b", () => {}), SubjectError);
});

Deno.test("memory bus: delivery is synchronous, in publish order, with copies of the data", () => {
  const bus = new MemoryBus();
  const got: BusMessage[] = [];
  bus.subscribe("t", (m) => got.push(m));
  const buf = bytes(1, 2, 3);
  bus.publish("t", buf, { K: "v" });
  assert.equal(got.length, 1); // before publish returned
  buf[0] = 9;
  bus.publish("t", buf);
  assert.deepEqual([...got[0].data], [1, 2, 3]);
  assert.deepEqual(got[0].headers, { K: "v" });
  assert.deepEqual([...got[1].data], [9, 2, 3]);
  assert.deepEqual(got[1].headers, {});
});

Deno.test("memory bus: a publish from a handler reaches everyone after the current message", () => {
  const bus = new MemoryBus();
  const order: string[] = [];
  bus.subscribe("x.*", (m) => {
    order.push(`A ${m.subject}`);
    if (m.subject === "x.1") bus.publish("x.2", bytes());
  });
  bus.subscribe("x.*", (m) => order.push(`B ${m.subject}`));
  bus.publish("x.1", bytes());
  assert.deepEqual(order, ["A x.1", "B x.1", "A x.2", "B x.2"]);
});

Deno.test("memory bus: unsubscribe stops delivery; a throwing handler does not stop others", () => {
  const errors: unknown[] = [];
  const bus = new MemoryBus({ onHandlerError: (err) => errors.push(err) });
  bus.subscribe("s", () => {
    throw new Error("boom");
  });
  const got = collect(bus, "s");
  const other: string[] = [];
  const sub = bus.subscribe("s", (m) => other.push(m.subject));
  bus.publish("s", bytes());
  sub.unsubscribe();
  sub.unsubscribe();
  bus.publish("s", bytes());
  assert.deepEqual(got, ["s", "s"]);
  assert.deepEqual(other, ["s"]);
  assert.equal(errors.length, 2);
  assert.equal((errors[0] as Error).message, "boom");
});

Deno.test("memory bus: max payload counts the NATS header block and the payload", () => {
  const bus = new MemoryBus({ maxPayload: 32 });
  // "NATS/1.0\r\nK: v\r\n\r\n" is 18 bytes; 18 + 14 = 32 fits, 18 + 15 = 33 does not
  bus.publish("p", new Uint8Array(14), { K: "v" });
  bus.publish("p", new Uint8Array(32));
  assert.throws(
    () => bus.publish("p", new Uint8Array(15), { K: "v" }),
    (err: unknown) => {
      assert.ok(err instanceof MaxPayloadError);
      assert.ok(err instanceof RangeError);
      assert.equal(err.size, 33);
      assert.match(err.message, /expected at most 32 bytes \(headers \+ payload\), found 33/);
      return true;
    },
  );
  assert.equal(new MemoryBus().maxPayload, 1048576);
});

Deno.test("memory bus: durable publish stores with sequence numbers and dedups in the window", async () => {
  let now = 1_000_000;
  const bus = new MemoryBus({ now: () => now });
  await bus.ensureStream({ name: "ALERTS", subjects: ["alerts.>"], duplicateWindowMs: 1000 });
  const seen = collect(bus, "alerts.>");
  assert.deepEqual(await bus.publishDurable("alerts.a", bytes(1), "id-1"), {
    stream: "ALERTS",
    seq: 1,
    duplicate: false,
  });
  assert.deepEqual(await bus.publishDurable("alerts.b", bytes(2), "id-2", { H: "x" }), {
    stream: "ALERTS",
    seq: 2,
    duplicate: false,
  });
  now += 999;
  assert.deepEqual(await bus.publishDurable("alerts.a", bytes(1), "id-1"), {
    stream: "ALERTS",
    seq: 1,
    duplicate: true,
  });
  now += 1; // id-1 was stored 1000 ms ago: outside the window now
  assert.deepEqual(await bus.publishDurable("alerts.a", bytes(3), "id-1"), {
    stream: "ALERTS",
    seq: 3,
    duplicate: false,
  });
  const stored = bus.streamMessages("ALERTS");
  assert.deepEqual(stored.map((m) => [m.seq, m.subject, m.data[0]]), [
    [1, "alerts.a", 1],
    [2, "alerts.b", 2],
    [3, "alerts.a", 3],
  ]);
  assert.deepEqual(stored[1].headers, { H: "x", "Nats-Msg-Id": "id-2" });
  assert.equal(stored[2].time, 1_001_000);
  // core subscribers see every publish, duplicates included (as on NATS)
  assert.equal(seen.length, 4);
});

Deno.test("memory bus: streams are bounded, extendable, and must capture the subject", async () => {
  const bus = new MemoryBus({ streamMaxMessages: 2 });
  await bus.ensureStream({ name: "S", subjects: ["a"], duplicateWindowMs: 1000 });
  await assert.rejects(bus.publishDurable("b", bytes(), "1"), StreamError);
  await bus.ensureStream({ name: "S", subjects: ["b"], duplicateWindowMs: 1000 });
  for (let i = 0; i < 3; i++) await bus.publishDurable(i % 2 ? "b" : "a", bytes(i), `m${i}`);
  assert.deepEqual(bus.streamMessages("S").map((m) => m.seq), [2, 3]);
  assert.throws(() => bus.streamMessages("NOPE"), StreamError);
  await assert.rejects(
    bus.ensureStream({ name: "a.b", subjects: ["x"], duplicateWindowMs: 1 }),
    StreamError,
  );
  const small = new MemoryBus({ maxPayload: 40 });
  await small.ensureStream({ name: "S", subjects: ["a"], duplicateWindowMs: 1000 });
  // the Nats-Msg-Id header counts: "NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n" = 28 bytes
  await small.publishDurable("a", new Uint8Array(12), "1");
  await assert.rejects(small.publishDurable("a", new Uint8Array(13), "2"), MaxPayloadError);
});

Deno.test("memory bus: close stops everything", async () => {
  const bus = new MemoryBus();
  const got = collect(bus, "s");
  assert.equal(bus.connected, true);
  await bus.flush();
  await bus.close();
  await bus.close();
  assert.equal(bus.connected, false);
  assert.throws(() => bus.publish("s", bytes()), BusClosedError);
  assert.throws(() => bus.subscribe("s", () => {}), BusClosedError);
  await assert.rejects(bus.flush(), BusClosedError);
  await assert.rejects(bus.publishDurable("s", bytes(), "1"), BusClosedError);
  assert.deepEqual(got, []);
});

Deno.test("memory bus: a borrowing handler's bytes are written over once it returns", () => {
  const bus = new MemoryBus();
  const borrowedViews: Uint8Array[] = [];
  const keptViews: Uint8Array[] = [];
  const during: number[][] = [];
  bus.subscribe(
    "s",
    (m) => {
      during.push([...m.data]);
      borrowedViews.push(m.data); // a bug a borrowing handler must not have: caught here
    },
    undefined,
    { borrows: true },
  );
  bus.subscribe("s", (m) => keptViews.push(m.data));
  bus.publish("s", bytes(1, 2, 3));
  assert.deepEqual(during, [[1, 2, 3]], "the handler reads the message while it runs");
  assert.deepEqual([...borrowedViews[0]], [BORROWED_FILL, BORROWED_FILL, BORROWED_FILL]);
  assert.deepEqual([...keptViews[0]], [1, 2, 3], "a plain subscription keeps its bytes");
});
