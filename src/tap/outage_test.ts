import assert from "node:assert/strict";
import { MemoryBus } from "../bus/memory_bus.ts";
import { OutagePublisher } from "./outage.ts";
import { tapServers } from "./connect.ts";

// The outage itself (a real nats-server stopped and started) is tested in tests/tap_restart_test.ts.

Deno.test("outage publisher: while connected, publishes go straight through and nothing is counted", () => {
  const bus = new MemoryBus();
  const got: string[] = [];
  bus.subscribe("t.>", (m) => got.push(m.headers["K"]));
  const out = new OutagePublisher(bus, { confirmEveryMs: 0 });
  for (let i = 0; i < 3; i++) {
    assert.equal(out.publish("t.x", new Uint8Array(1), { K: `${i}` }), true);
  }
  assert.deepEqual(got, ["0", "1", "2"]);
  assert.equal(out.held, 0);
  assert.deepEqual(
    [out.stats.buffered, out.stats.dropped, out.stats.disconnects, out.stats.inDoubt],
    [0, 0, 0, 0],
  );
  out.close();
});

Deno.test("outage publisher: limits are checked", () => {
  const bus = new MemoryBus();
  assert.throws(
    () => new OutagePublisher(bus, { maxMessages: -1 }),
    /tap outage.maxMessages: expected an integer ≥ 0, found -1/,
  );
  assert.throws(
    () => new OutagePublisher(bus, { maxBytes: 1.5 }),
    /tap outage.maxBytes: expected an integer ≥ 0, found 1.5/,
  );
});

Deno.test("tap servers: a list or a comma-separated string, each entry a URL", () => {
  assert.equal(tapServers(["nats://a:1", "tls://b:2"]), "nats://a:1,tls://b:2");
  assert.equal(tapServers("nats://a:1, nats://b:2"), "nats://a:1,nats://b:2");
  assert.throws(() => tapServers([]), /expected at least one URL, found an empty list/);
  assert.throws(
    () => tapServers(["nats://a:1", "b:2"]),
    /tap servers\[1\]: expected a URL like nats:\/\/host:4222, found "b:2"/,
  );
});
