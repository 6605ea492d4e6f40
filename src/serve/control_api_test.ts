import assert from "node:assert/strict";
import { controlApi } from "./control_api.ts";
import { Telemetry } from "./telemetry.ts";

Deno.test("control api: health, readiness, Prometheus metrics and stats", async () => {
  const telemetry = new Telemetry();
  let ready = false;
  const app = controlApi({ telemetry, ready: () => ready, info: () => ({ monitor: "m1" }) });

  assert.equal((await app.request("/healthz")).status, 200);
  assert.equal((await app.request("/readyz")).status, 503);
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
