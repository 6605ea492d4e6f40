/** Alert delivery: write-ahead before checkpoint before release, and failures counted, never thrown. */
import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { AlertSink, Durability, DurableSink } from "../sinks/sink.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import { AlertDelivery, type AlertDeliveryOptions, checkpointOf } from "./delivery.ts";

const alert = (id: string) =>
  ({ id, policy: { id: "rule" }, severity: "high" }) as unknown as Alert;
const frame = (requestId: string, seq: number, endOfRequest = false) =>
  ({ requestId, seq, endOfRequest }) as Frame;

/** A sink that records what it is handed into `events`. */
function sink(name: string, events: string[], opts: { throws?: boolean } = {}): AlertSink {
  return {
    name,
    start: () => Promise.resolve(),
    submit(a: Alert) {
      if (opts.throws) throw new Error(`${name} broke`);
      events.push(`${name}:${a.id}`);
      return true;
    },
    drain: () => Promise.resolve(name === "lossy" ? 2 : 0),
    close: () => Promise.resolve(),
    stats: { queued: 0, delivered: 0, dropped: {}, retries: 0 },
  };
}

function setup(over: Partial<AlertDeliveryOptions> = {}) {
  const events: string[] = [];
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const errors: string[] = [];
  const delivery = new AlertDelivery({
    sinks: [sink("a", events)],
    telemetry,
    log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 }),
    onError: (stage) => errors.push(stage),
    ...over,
  });
  return { events, telemetry, logs, errors, delivery };
}

Deno.test("delivery: checkpointOf keeps one past each request's highest seq, and the requests that ended", () => {
  const { next, ended } = checkpointOf([
    frame("r1", 3),
    frame("r1", 5),
    frame("r2", 0),
    frame("r2", 1, true),
  ]);
  assert.deepEqual([...next], [["r1", 6]]);
  assert.deepEqual(ended, ["r2"]);
});

Deno.test("delivery: write-ahead, then the checkpoint, then the other sinks; the durable sink is not handed an alert twice", () => {
  const events: string[] = [];
  const durable: DurableSink = {
    ...sink("durable", events),
    persist(alerts: readonly Alert[]): Durability[] {
      events.push(`persist:${alerts.map((a) => a.id).join(",")}`);
      return alerts.map(() => true);
    },
  };
  const checkpoints = {
    path: "cp",
    record: (next: Map<string, number>) => events.push(`checkpoint:${[...next.values()]}`),
  } as unknown as SeqCheckpoints;
  const { delivery, telemetry } = setup({
    sinks: [durable, sink("b", events)],
    durable,
    checkpoints,
    onAlert: (a) => events.push(`onAlert:${a.id}`),
  });
  delivery.deliver([alert("x"), alert("y")], [frame("r1", 7)]);
  assert.deepEqual(events, [
    "persist:x,y",
    "checkpoint:8",
    "onAlert:x",
    "b:x",
    "onAlert:y",
    "b:y",
  ]);
  assert.equal(telemetry.value("latentwatch.alerts", { rule: "rule", severity: "high" }), 2);
});

Deno.test("delivery: an alert not yet durable is released once it is, never when dropped", async () => {
  const events: string[] = [];
  const durable: DurableSink = {
    ...sink("durable", events),
    persist: () => [Promise.resolve(true), Promise.resolve(false)],
  };
  const { delivery } = setup({ sinks: [durable, sink("b", events)], durable });
  delivery.deliver([alert("kept"), alert("dropped")], []);
  assert.deepEqual(events, []);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(events, ["b:kept"]);
});

Deno.test("delivery: a throwing sink or onAlert is reported, the other sinks still get the alert", () => {
  const events: string[] = [];
  const { delivery, errors } = setup({
    sinks: [sink("bad", events, { throws: true }), sink("good", events)],
    onAlert: () => {
      throw new Error("display broke");
    },
  });
  delivery.deliver([alert("x")], []);
  assert.deepEqual(events, ["good:x"]);
  assert.deepEqual(errors, ["on_alert", "sink_submit"]);
});

Deno.test("delivery: a checkpoint that cannot be written is counted and logged, not thrown", () => {
  const checkpoints = {
    path: "cp",
    record: () => {
      throw new Error("disk full");
    },
    lost: () => {
      throw new Error("disk full");
    },
  } as unknown as SeqCheckpoints;
  const { delivery, telemetry, logs } = setup({ checkpoints });
  delivery.deliver([], [frame("r1", 0)]);
  delivery.lost("r1", 1, 3);
  delivery.expired(["r1"]); // silent: counted where batches write theirs
  assert.equal(telemetry.value("latentwatch.checkpoint.errors"), 2);
  assert.equal(logs.filter((l) => l.includes("checkpoint.write_failed")).length, 2);
});

Deno.test("delivery: drain sums what every sink lost at the deadline", async () => {
  const events: string[] = [];
  const { delivery } = setup({
    sinks: [sink("lossy", events), sink("lossy", events), sink("ok", events)],
  });
  assert.equal(await delivery.drain(10), 4);
});
