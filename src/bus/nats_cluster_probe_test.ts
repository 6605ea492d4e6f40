/** The failover probes against a real single nats-server. */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startDurablePublisher, streamMsgIds } from "./nats_cluster_probe.ts";
import { startNatsServer } from "./nats_server.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("probe: the durable publisher's acked ids are the stream's, across a server restart", async () => {
  const server = await startNatsServer();
  const nc = await connect({
    servers: server.url,
    reconnectTimeWait: 50,
    maxReconnectAttempts: -1,
  });
  try {
    await (await jetstreamManager(nc)).streams.add({ name: "P", subjects: ["p.>"] });
    const pub = startDurablePublisher(jetstream(nc), "p.x", { timeoutMs: 500 });
    await sleep(300);
    const downAt = Date.now();
    await server.restart(); // same port and store
    const upAt = Date.now();
    await pub.ackAfter(upAt, 15_000);
    const res = await pub.stop();
    assert.ok(res.acked.length > 10, `only ${res.acked.length} acked`);
    assert.deepEqual(res.acked, res.acked.map((_, i) => `m-${i}`));
    assert.ok(res.longestGapAfter(downAt) >= upAt - downAt, "the gap covers the downtime");
    assert.deepEqual(await streamMsgIds(nc, "P"), res.acked);
  } finally {
    await nc.close();
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true });
  }
});

Deno.test("probe: ackAfter names the failures when no ack comes", async () => {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  try {
    // no stream on the subject: every publish fails (no responders)
    const pub = startDurablePublisher(jetstream(nc), "nostream.x", { timeoutMs: 200 });
    await assert.rejects(
      pub.ackAfter(Date.now(), 500),
      /no ack within 500 ms .* failed attempts, first error: .+/,
    );
    const res = await pub.stop();
    assert.deepEqual(res.acked, []);
    assert.ok(res.failures > 0);
  } finally {
    await nc.close();
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true });
  }
});
