import assert from "node:assert/strict";
import { controlApi, serveControlApi } from "./control_api.ts";
import { AlertFeed } from "./alert_feed.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { sampleAlert } from "../../tests/helpers/live_alerts.ts";
import { waitUntil } from "../../tests/helpers/stream.ts";

Deno.test("control api: health, readiness, Prometheus metrics and stats", async () => {
  const telemetry = new Telemetry();
  let ready = false;
  const app = controlApi({ telemetry, ready: () => ready, info: () => ({ monitor: "m1" }) });

  assert.equal((await app.request("/healthz")).status, 200);
  assert.equal((await app.request("/readyz")).status, 503);
  const why = controlApi({
    telemetry,
    ready: () => false,
    notReadyReasons: () => ["NATS disconnected", "pipeline not started"],
    info: () => ({}),
  });
  const res = await why.request("/readyz");
  assert.equal(res.status, 503);
  assert.equal(await res.text(), "not ready: NATS disconnected; pipeline not started");
  ready = true;
  assert.equal((await app.request("/readyz")).status, 200);

  telemetry.add("latentwatch.frames.rejected", 2, { reason: "Lw-Dtype" });
  telemetry.add("latentwatch.frames.rejected", 1, { reason: "payload" });
  telemetry.set("latentwatch.queue.depth", 7);
  const prom = await (await app.request("/metrics")).text();
  assert.match(prom, /^latentwatch_frames_rejected_total\{reason="Lw-Dtype"\} 2$/m);
  assert.match(prom, /^latentwatch_frames_rejected_total\{reason="payload"\} 1$/m);
  assert.match(prom, /^# TYPE latentwatch_queue_depth gauge$/m);
  assert.match(prom, /^latentwatch_queue_depth 7$/m);
  assert.match(prom, /^latentwatch_alerts_dropped_total 0$/m, "untouched counters still appear");

  const stats = await (await app.request("/stats")).json();
  assert.equal(stats.monitor, "m1");
  assert.equal(stats.metrics['latentwatch.frames.rejected{reason="Lw-Dtype"}'], 2);
});

Deno.test("telemetry: gauges set by value, counters add, totals sum label sets", () => {
  const t = new Telemetry();
  t.set("latentwatch.queue.depth", 5);
  t.set("latentwatch.queue.depth", 3);
  assert.equal(t.value("latentwatch.queue.depth"), 3);
  t.add("latentwatch.frames.dropped", 1, { reason: "queue_full" });
  t.add("latentwatch.frames.dropped", 4, { reason: "encode_error" });
  assert.equal(t.total("latentwatch.frames.dropped"), 5);
  assert.equal(t.value("latentwatch.frames.dropped", { reason: "queue_full" }), 1);
});

/** Read SSE frames (blocks separated by a blank line) off a response body as they arrive. */
function sseReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return {
    /** The next frame (comment or event), waiting at most `ms`. */
    async next(ms = 5000): Promise<string> {
      const deadline = Date.now() + ms;
      while (!buf.includes("\n\n")) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no SSE frame within ${ms} ms; have ${JSON.stringify(buf)}`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          reader.read(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no SSE frame within ${ms} ms`)), left);
          }),
        ]).finally(() => clearTimeout(timer));
        if (r.done) throw new Error("SSE stream ended");
        buf += r.value;
      }
      const i = buf.indexOf("\n\n");
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      return frame;
    },
    cancel: () => reader.cancel(),
  };
}

function parseFrame(frame: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of frame.split("\n")) {
    const i = line.indexOf(": ");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 2);
  }
  return out;
}

function baseState(alerts?: AlertFeed, sseHeartbeatMs?: number) {
  return {
    telemetry: new Telemetry(),
    ready: () => true,
    info: () => ({}),
    alerts,
    sseHeartbeatMs,
  };
}

Deno.test("control api: /alerts/stream streams filtered alerts as SSE, with heartbeats", async () => {
  const feed = new AlertFeed();
  const app = controlApi(baseState(feed, 50));
  const res = await app.request("/alerts/stream?severity=high,critical&model=gpt2-small");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  const sse = sseReader(res);
  assert.equal(await sse.next(), ": latentwatch alerts");
  assert.equal(feed.stats.subscribers, 1);

  feed.publish(sampleAlert({ requestId: "low", severity: "low" }));
  feed.publish(sampleAlert({ requestId: "other-model", model: "llama" }));
  const wanted = sampleAlert({ requestId: "req-7", severity: "critical" });
  feed.publish(wanted);

  let frame = await sse.next();
  while (frame.startsWith(":")) frame = await sse.next(); // heartbeats may come first
  const f = parseFrame(frame);
  assert.equal(f.event, "alert");
  assert.equal(f.id, wanted.id);
  assert.deepEqual(JSON.parse(f.data), wanted);

  // idle: heartbeats (SSE comments) keep coming
  assert.equal(await sse.next(), ": heartbeat");
  await sse.cancel();
  await waitUntil(() => feed.stats.subscribers === 0, "unsubscribed when the client left");
});

Deno.test("control api: /alerts/stream tells a lagging client how many alerts it missed", async () => {
  const feed = new AlertFeed({ maxQueue: 2 });
  const app = controlApi(baseState(feed, 60_000));
  const res = await app.request("/alerts/stream");
  const sse = sseReader(res);
  assert.equal(await sse.next(), ": latentwatch alerts");
  // the client reads nothing while 20 alerts arrive: its queue of 2 overflows
  for (let i = 0; i < 20; i++) feed.publish(sampleAlert({ requestId: `r${i}` }));
  const frames: Record<string, string>[] = [];
  while (!frames.some((f) => f.data?.includes('"r19"'))) frames.push(parseFrame(await sse.next()));
  const lagged = frames.find((f) => f.event === "lagged");
  assert.ok(lagged, "a lagged event precedes the next alert");
  const missed = JSON.parse(lagged.data).missed;
  const alerts = frames.filter((f) => f.event === "alert");
  assert.equal(alerts.length + missed, 20, "every alert is either delivered or counted");
  assert.equal(feed.stats.lagged, missed);
  await sse.cancel();
});

Deno.test("control api: /alerts/stream answers 404 without a feed, 400 on a bad filter, 503 when full", async () => {
  assert.equal((await controlApi(baseState()).request("/alerts/stream")).status, 404);
  const feed = new AlertFeed({ maxSubscribers: 1 });
  const app = controlApi(baseState(feed, 60_000));
  const bad = await app.request("/alerts/stream?severity=urgent");
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error, /unknown severity 'urgent'/);
  assert.equal((await app.request("/alerts/stream?severity=high&min_severity=low")).status, 400);
  const first = await app.request("/alerts/stream");
  const full = await app.request("/alerts/stream");
  assert.equal(full.status, 503);
  await full.body?.cancel();
  await first.body!.cancel();
  await waitUntil(() => feed.stats.subscribers === 0, "first client gone");
});

Deno.test("control api: /alerts/stream answers 429 past the per-client limit, by remote address", async () => {
  const feed = new AlertFeed({ maxPerClient: 2 });
  const app = controlApi(baseState(feed, 60_000));
  const as = (hostname: string) => ({ remoteAddr: { hostname, port: 1, transport: "tcp" } });
  const open = [
    await app.request("/alerts/stream", {}, as("10.0.0.1")),
    await app.request("/alerts/stream", {}, as("10.0.0.1")),
  ];
  const third = await app.request("/alerts/stream", {}, as("10.0.0.1"));
  assert.equal(third.status, 429);
  assert.equal(third.headers.get("Retry-After"), "5");
  assert.match((await third.json()).error, /expected at most 2 live streams per client address/);
  const other = await app.request("/alerts/stream", {}, as("10.0.0.2"));
  assert.equal(other.status, 200, "another address is not affected");
  await other.body!.cancel();
  for (const r of open) await r.body!.cancel();
  await waitUntil(() => feed.stats.subscribers === 0, "clients gone");

  // through a real server: the remote address comes from the connection
  const srv = serveControlApi(app, "127.0.0.1:0");
  try {
    const url = `http://127.0.0.1:${srv.addr.port}/alerts/stream`;
    const streams = [await fetch(url), await fetch(url)];
    for (const r of streams) assert.equal(r.status, 200);
    const refused = await fetch(url);
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    await streams[0].body!.cancel();
    await waitUntil(() => feed.stats.subscribers === 1, "a slot freed");
    const again = await fetch(url);
    assert.equal(again.status, 200, "a closed stream frees its slot");
    await again.body!.cancel();
    await streams[1].body!.cancel();
    await waitUntil(() => feed.stats.subscribers === 0, "clients gone");
  } finally {
    feed.close();
    await srv.shutdown();
  }
});

Deno.test("control api: with a token, every route but the probes asks for it", async () => {
  const app = controlApi({
    telemetry: new Telemetry(),
    ready: () => true,
    info: () => ({ monitor: "m1" }),
    partitions: () => ({ owned: [] }),
    token: "t0ken",
  });
  assert.equal((await app.request("/healthz")).status, 200);
  assert.equal((await app.request("/readyz")).status, 200);
  for (const path of ["/metrics", "/stats", "/partitions"]) {
    const res = await app.request(path);
    assert.equal(res.status, 401, path);
    await res.body?.cancel();
    const ok = await app.request(path, { headers: { Authorization: "Bearer t0ken" } });
    assert.equal(ok.status, 200, path);
    await ok.body?.cancel();
  }
});
