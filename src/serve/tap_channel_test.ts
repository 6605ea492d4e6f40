/** The channel back to the taps: verdicts for gated frames, commands on the steer subject, acks counted. */
import assert from "node:assert/strict";
import { MemoryBus } from "../bus/memory_bus.ts";
import type { BusMessage } from "../bus/bus.ts";
import type { Frame } from "../core/frame/format.ts";
import { encodeAck } from "../core/steer/encode.ts";
import { parseCommand, parseVerdict } from "../core/steer/parse.ts";
import type { SteerCommand } from "../core/steer/protocol.ts";
import { steerAckSubject, steerSubject } from "../core/steer/subjects.ts";
import type { FrameOutcome } from "../pipeline/evaluate.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { TapChannel } from "./tap_channel.ts";

const frame = { model: "m", hook: "h", requestId: "r1", seq: 4 } as Frame;
const command: SteerCommand = {
  id: "c1",
  requestId: "r1",
  model: "m",
  hook: "h",
  dModel: 4,
  fromPosition: 9,
  untilPosition: null,
  issuedAtMs: 0,
  expiresAtMs: Date.now() + 60_000,
  rule: "stop",
  op: { kind: "abort" },
};
const outcome = (commands: SteerCommand[]): FrameOutcome => ({
  firings: [],
  alerts: [],
  commands,
  verdict: commands.length > 0 ? "abort" : "continue",
  skipped: [],
});

function setup() {
  const bus = new MemoryBus();
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const taps = new TapChannel({
    model: "m",
    hook: "h",
    bus,
    telemetry,
    log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 }),
  });
  const seen: BusMessage[] = [];
  bus.subscribe(">", (msg) => seen.push(msg));
  return { bus, telemetry, logs, taps, seen };
}

Deno.test("tap channel: a gated frame gets its verdict with the commands inside, on its reply subject", () => {
  const { taps, seen, telemetry } = setup();
  taps.remember(frame, { subject: "latentwatch.tap.v1.m.h.2", reply: "_INBOX.g" });
  taps.act(frame, outcome([command]));
  assert.deepEqual(seen.map((m) => m.subject), ["_INBOX.g"]);
  const v = parseVerdict(seen[0].data);
  assert.equal(v.verdict, "abort");
  assert.deepEqual(v.commands.map((c) => c.id), ["c1"]);
  assert.equal(telemetry.value("latentwatch.steer.sent", { op: "abort", route: "verdict" }), 1);
  assert.equal(telemetry.value("latentwatch.gate.replies", { verdict: "abort" }), 1);
});

Deno.test("tap channel: an ungated frame's commands go to the steer subject of its partition", () => {
  const { taps, seen, telemetry } = setup();
  taps.remember(frame, { subject: "latentwatch.tap.v1.m.h.2" });
  taps.act(frame, outcome([]));
  assert.equal(seen.length, 0);
  taps.act(frame, outcome([command]));
  assert.deepEqual(seen.map((m) => m.subject), [steerSubject("m", "h", 2)]);
  assert.equal(parseCommand(seen[0].data).id, "c1");
  assert.equal(telemetry.value("latentwatch.steer.sent", { op: "abort", route: "subject" }), 1);
});

Deno.test("tap channel: replyError answers only a gated frame", () => {
  const { taps, seen } = setup();
  const gated = { ...frame, requestId: "r2" } as Frame;
  taps.remember(frame, { subject: "latentwatch.tap.v1.m.h.0" });
  taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.e" });
  taps.replyError(frame, "encode failed: x");
  taps.replyError(gated, "encode failed: x");
  assert.equal(seen.length, 1);
  const v = parseVerdict(seen[0].data);
  assert.equal(v.verdict, "error");
  assert.equal(v.reason, "encode failed: x");
});

Deno.test("tap channel: acks are counted by status, malformed ones too; none after close", () => {
  const { bus, taps, telemetry, logs } = setup();
  taps.subscribeAcks();
  const subject = steerAckSubject("m", "h");
  bus.publish(subject, encodeAck({ id: "c1", requestId: "r1", status: "applied", position: 9 }));
  bus.publish(subject, encodeAck({ id: "c2", requestId: "r1", status: "expired" }));
  bus.publish(subject, new TextEncoder().encode("not json"));
  taps.close();
  bus.publish(subject, encodeAck({ id: "c3", requestId: "r1", status: "applied" }));
  assert.equal(telemetry.value("latentwatch.steer.acks", { status: "applied" }), 1);
  assert.equal(telemetry.value("latentwatch.steer.acks", { status: "expired" }), 1);
  assert.equal(telemetry.value("latentwatch.steer.acks", { status: "malformed" }), 1);
  assert.ok(logs.some((l) => l.includes("steer.ack_malformed")));
});

Deno.test("tap channel: a reply that cannot be published is counted and logged, not thrown", () => {
  const { bus, taps, telemetry, logs } = setup();
  bus.publish = () => {
    throw new Error("connection closed");
  };
  taps.reply("_INBOX.x", { requestId: "r1", seq: 0, verdict: "continue", commands: [] });
  assert.equal(telemetry.value("latentwatch.bus.errors", { type: "gate_reply" }), 1);
  assert.ok(logs.some((l) => l.includes("gate.reply_failed")));
});

Deno.test("tap channel: deferred gate latencies are measured when answered and observed once asked", async () => {
  const { taps, seen, telemetry } = setup();
  const count = async () => {
    const m = (await telemetry.prometheus()).match(
      /^latentwatch_gate_latency_seconds_count (\S+)$/m,
    );
    return Number(m?.[1] ?? NaN);
  };
  const sum = async () => {
    const m = (await telemetry.prometheus()).match(/^latentwatch_gate_latency_seconds_sum (\S+)$/m);
    return Number(m?.[1] ?? NaN);
  };
  // at once without deferring
  taps.remember(
    frame,
    { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.a" },
    performance.now(),
  );
  taps.act(frame, outcome([]));
  assert.equal(await count(), 1);
  // deferred: the verdicts go out, the histogram waits
  const f2 = { ...frame, seq: 5 } as Frame;
  const f3 = { ...frame, seq: 6 } as Frame;
  const arrived = performance.now() - 50; // 50 ms before the answer
  taps.remember(f2, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.b" }, arrived);
  taps.remember(f3, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.c" }, arrived);
  taps.deferLatencies();
  taps.act(f2, outcome([]));
  taps.act(f3, outcome([]));
  assert.deepEqual(seen.map((m) => m.subject), ["_INBOX.a", "_INBOX.b", "_INBOX.c"]);
  assert.equal(await count(), 1, "nothing observed before observeDeferred");
  const before = await sum();
  await new Promise((r) => setTimeout(r, 100)); // observed later, measured when answered
  taps.observeDeferred();
  assert.equal(await count(), 3);
  const added = (await sum()) - before;
  // measured when observed they would sum to 0.3 s or more
  assert.ok(added >= 0.099 && added < 0.2, `two latencies of about 50 ms, summed ${added} s`);
  taps.observeDeferred(); // nothing kept: observes nothing again
  assert.equal(await count(), 3);
});
