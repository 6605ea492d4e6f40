import assert from "node:assert/strict";
import { freePort, startNatsServer } from "./nats_server.ts";
import { connectWhenAnswered, NatsConnectAbortedError } from "./nats_first_connect.ts";

Deno.test("connectWhenAnswered: an abort ends the wait for a port nobody listens on at once", async () => {
  const stop = new AbortController();
  const url = `nats://127.0.0.1:${freePort()}`;
  const waiting = connectWhenAnswered({ servers: [url] }, { retryMs: 50, signal: stop.signal });
  await new Promise((r) => setTimeout(r, 400));
  const t0 = performance.now();
  stop.abort();
  const err = await waiting.then(() => null, (e) => e);
  assert.ok(err instanceof NatsConnectAbortedError, String(err));
  assert.equal(err.url, url);
  assert.ok(err.attempts >= 2, `retried: ${err.attempts} attempts`);
  assert.ok(err.cause instanceof Error, "the last connection error is the cause");
  assert.ok(performance.now() - t0 < 200, "rejected without waiting for another attempt");
});

Deno.test("connectWhenAnswered: an already aborted signal makes no attempt", async () => {
  const err = await connectWhenAnswered(
    { servers: [`nats://127.0.0.1:${freePort()}`] },
    { signal: AbortSignal.abort() },
  ).then(() => null, (e) => e);
  assert.ok(err instanceof NatsConnectAbortedError);
  assert.equal(err.attempts, 0);
});

Deno.test("connectWhenAnswered: waits until a server starts on the port, then connects", async () => {
  const port = freePort();
  const waiting = connectWhenAnswered({ servers: [`nats://127.0.0.1:${port}`] }, { retryMs: 50 });
  await new Promise((r) => setTimeout(r, 300));
  const server = await startNatsServer({ port });
  try {
    const nc = await waiting;
    assert.equal(nc.isClosed(), false);
    await nc.close();
  } finally {
    await server.stop();
  }
});
