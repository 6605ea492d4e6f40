/**
 * Request/reply on both buses (gated frames use it): a reply reaches the
 * requester, a missing subscriber is "no responders", a silent one a timeout.
 */
import assert from "node:assert/strict";
import { type Bus, BusRequestError } from "../src/bus/bus.ts";
import { MemoryBus } from "../src/bus/memory_bus.ts";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { startNatsServer } from "../src/bus/nats_server.ts";

const utf8 = new TextEncoder();
const text = new TextDecoder();

async function checkRequestReply(bus: Bus): Promise<void> {
  const sub = bus.subscribe("svc.echo", (msg) => {
    assert.ok(msg.reply, "a request carries a reply subject");
    bus.publish(msg.reply!, utf8.encode(`echo ${text.decode(msg.data)} ${msg.headers["X-N"]}`));
  });
  const silent = bus.subscribe("svc.silent", () => {});
  try {
    await bus.flush();
    const reply = await bus.request("svc.echo", utf8.encode("hi"), { "X-N": "7" }, 2000);
    assert.equal(text.decode(reply.data), "echo hi 7");
    const timeout = await bus.request("svc.silent", utf8.encode("x"), undefined, 50)
      .then(() => null, (err) => err);
    assert.ok(timeout instanceof BusRequestError, String(timeout));
    assert.equal(timeout.kind, "timeout");
    const nobody = await bus.request("svc.nobody", utf8.encode("x"), undefined, 2000)
      .then(() => null, (err) => err);
    assert.ok(nobody instanceof BusRequestError, String(nobody));
    assert.equal(nobody.kind, "no_responders");
    assert.match(nobody.message, /no responders/);
  } finally {
    sub.unsubscribe();
    silent.unsubscribe();
  }
}

Deno.test("bus request/reply: memory bus (the demo's)", async () => {
  const bus = new MemoryBus();
  await checkRequestReply(bus);
  await bus.close();
});

Deno.test("bus request/reply: NATS bus on a real nats-server", async () => {
  const server = await startNatsServer();
  const bus = await connectNatsBus({ url: server.url });
  try {
    await checkRequestReply(bus);
  } finally {
    await bus.close();
    await server.stop();
  }
});
