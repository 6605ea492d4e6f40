import assert from "node:assert/strict";
import { ALERT, MINIMAL } from "../../core/render/test_alert.ts";
import { Logger } from "../../shared/log.ts";
import { startHttpReceiver } from "../../../tests/helpers/receivers.ts";
import { WebhookConfigError, WebhookSink } from "./sink.ts";

const log = new Logger({ quiet: true, write: () => {} });
const opts = { maxQueue: 100, timeoutMs: 2000, initialBackoffMs: 20, maxBackoffMs: 100 };

Deno.test("WebhookSink: generic JSON POST with headers; the body is the alert", async () => {
  const rx = startHttpReceiver(() => 200);
  const sink = new WebhookSink({ ...opts, url: rx.url, headers: { Authorization: "Bearer t0k" } }, {
    log,
  });
  try {
    sink.submit(ALERT);
    assert.equal(await sink.drain(2000), 0);
    assert.equal(rx.received.length, 1);
    const r = rx.received[0];
    assert.deepEqual(JSON.parse(r.body), ALERT);
    assert.equal(r.headers.get("authorization"), "Bearer t0k");
    assert.equal(r.headers.get("content-type"), "application/json");
    assert.equal(r.headers.get("lw-alert-id"), ALERT.id);
    assert.equal(r.headers.get("traceparent"), ALERT.traceparent);
    assert.deepEqual(sink.stats, { queued: 0, delivered: 1, dropped: {}, retries: 0 });
  } finally {
    await sink.close();
    await rx.close();
  }
});

Deno.test("WebhookSink: Splunk HEC shape and Authorization: Splunk <token>", async () => {
  const rx = startHttpReceiver(() => 200);
  const sink = new WebhookSink({
    ...opts,
    url: rx.url,
    shape: "splunk-hec",
    splunk: { token: "hec-123", index: "ai", host: "gw1" },
  }, { log });
  try {
    sink.submit(ALERT);
    assert.equal(await sink.drain(2000), 0);
    const r = rx.received[0];
    assert.equal(r.headers.get("authorization"), "Splunk hec-123");
    assert.deepEqual(JSON.parse(r.body), {
      time: Date.parse(ALERT.time) / 1000,
      host: "gw1",
      source: "latentwatch",
      sourcetype: "latentwatch:alert",
      index: "ai",
      event: ALERT,
    });
  } finally {
    await sink.close();
    await rx.close();
  }
});

Deno.test("WebhookSink: 503 twice then 200 — retried with backoff, delivered once", async () => {
  const rx = startHttpReceiver((n) => n < 2 ? 503 : 200);
  const sink = new WebhookSink({ ...opts, url: rx.url, maxAttempts: 5 }, { log });
  try {
    sink.submit(ALERT);
    assert.equal(await sink.drain(3000), 0);
    assert.equal(rx.received.length, 3);
    assert.ok(rx.received[1].at - rx.received[0].at >= 15, "first backoff ≈ 20 ms");
    assert.ok(rx.received[2].at - rx.received[1].at >= 35, "second backoff ≈ 40 ms");
    assert.ok(rx.received.every((r) => r.body === rx.received[0].body), "same body each time");
    assert.deepEqual(sink.stats, { queued: 0, delivered: 1, dropped: {}, retries: 2 });
  } finally {
    await sink.close();
    await rx.close();
  }
});

Deno.test("WebhookSink: 429 is retried; 400 is rejected at once, no retry", async () => {
  const rx = startHttpReceiver((_n, r) => JSON.parse(r.body).id === MINIMAL.id ? 400 : 200);
  let first429 = true;
  const rx429 = startHttpReceiver(() => first429 ? (first429 = false, 429) : 200);
  const sink = new WebhookSink({ ...opts, url: rx.url, maxAttempts: 5 }, { log });
  const sink429 = new WebhookSink({ ...opts, url: rx429.url }, { log });
  try {
    sink.submit(MINIMAL);
    sink.submit(ALERT);
    sink429.submit(ALERT);
    assert.equal(await sink.drain(2000), 0);
    assert.equal(await sink429.drain(2000), 0);
    assert.equal(rx.received.length, 2, "the 400 was not sent again");
    assert.deepEqual(sink.stats, { queued: 0, delivered: 1, dropped: { rejected: 1 }, retries: 0 });
    assert.equal(rx429.received.length, 2);
    assert.deepEqual(sink429.stats, { queued: 0, delivered: 1, dropped: {}, retries: 1 });
  } finally {
    await sink.close();
    await sink429.close();
    await rx.close();
    await rx429.close();
  }
});

Deno.test("WebhookSink: a server that never answers — each POST times out, bounded attempts, counted", async () => {
  const rx = startHttpReceiver(() => "hang");
  const sink = new WebhookSink({
    ...opts,
    url: rx.url,
    timeoutMs: 100,
    maxAttempts: 3,
  }, { log });
  try {
    const t0 = performance.now();
    sink.submit(ALERT);
    assert.equal(await sink.drain(5000), 0);
    const took = performance.now() - t0;
    assert.equal(rx.received.length, 3);
    assert.ok(took >= 300 && took < 2000, `3 timeouts + 2 backoffs, found ${took} ms`);
    assert.deepEqual(sink.stats, {
      queued: 0,
      delivered: 0,
      dropped: { retries_exhausted: 1 },
      retries: 2,
    });
  } finally {
    await sink.close();
    await rx.close();
  }
});

Deno.test("WebhookSink: connection refused is retried then dropped", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const sink = new WebhookSink({ ...opts, url: `http://127.0.0.1:${port}/`, maxAttempts: 2 }, {
    log,
  });
  sink.submit(ALERT);
  assert.equal(await sink.drain(3000), 0);
  assert.deepEqual(sink.stats.dropped, { retries_exhausted: 1 });
  assert.equal(sink.stats.retries, 1);
  await sink.close();
});

Deno.test("WebhookSink: misconfiguration is a named error", () => {
  assert.throws(() => new WebhookSink({ ...opts, url: "ftp://x/" }, { log }), WebhookConfigError);
  assert.throws(
    () => new WebhookSink({ ...opts, url: "http://x/", shape: "splunk-hec" }, { log }),
    { name: "WebhookConfigError", message: /expected a Splunk HEC token .*, found none/ },
  );
});

Deno.test("WebhookSink: Idempotency-Key is the alert id, the same on a retry and on a second delivery", async () => {
  // the first POST fails (503) and is retried; ALERT is submitted twice (a trace replayed a
  // second time into a running monitor), MINIMAL once
  const rx = startHttpReceiver((n) => n === 0 ? 503 : 200);
  const sink = new WebhookSink({ ...opts, url: rx.url, format: "ecs", concurrency: 1 }, { log });
  try {
    sink.submit(ALERT);
    sink.submit(ALERT);
    sink.submit(MINIMAL);
    assert.equal(await sink.drain(2000), 0);
    assert.deepEqual(sink.stats, { queued: 0, delivered: 3, dropped: {}, retries: 1 });
    const keys = rx.received.map((r) => r.headers.get("idempotency-key"));
    assert.deepEqual([...keys].sort(), [ALERT.id, ALERT.id, ALERT.id, MINIMAL.id].sort());
    assert.notEqual(ALERT.id, MINIMAL.id);
    // the body says the same: ECS event.id
    for (const r of rx.received) {
      assert.equal(JSON.parse(r.body).event.id, r.headers.get("idempotency-key"));
    }
  } finally {
    await sink.close();
    await rx.close();
  }
  // the Splunk HEC shape carries it too (its Authorization does not replace it)
  const hec = startHttpReceiver(() => 200);
  const hecSink = new WebhookSink({
    ...opts,
    url: hec.url,
    shape: "splunk-hec",
    headers: { "Idempotency-Key": "static" },
    splunk: { token: "t" },
  }, { log });
  try {
    hecSink.submit(ALERT);
    assert.equal(await hecSink.drain(2000), 0);
    assert.equal(hec.received[0].headers.get("idempotency-key"), ALERT.id);
    assert.equal(JSON.parse(hec.received[0].body).event.id, ALERT.id);
  } finally {
    await hecSink.close();
    await hec.close();
  }
});
