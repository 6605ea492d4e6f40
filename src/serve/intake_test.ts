/** Intake: every tap message is accepted, rejected, dropped or counted lost, and logged with its request. */
import assert from "node:assert/strict";
import { MemoryBus } from "../bus/memory_bus.ts";
import type { BusMessage } from "../bus/bus.ts";
import { MicroBatcher } from "../core/batcher.ts";
import { encodeFrame } from "../core/frame/encode.ts";
import type { Frame } from "../core/frame/format.ts";
import { tapSubject } from "../core/frame/subjects.ts";
import { parseVerdict } from "../core/steer/parse.ts";
import { SequenceTracker } from "../pipeline/sequence.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { Intake } from "./intake.ts";
import { TapChannel } from "./tap_channel.ts";

const D = 2;

/** A tap message of `tokens` zero rows for request `requestId` at `seq`. */
function msg(requestId: string, seq: number, opts: { tokens?: number; reply?: string } = {}) {
  const tokens = opts.tokens ?? 1;
  const { headers, payload } = encodeFrame(
    { model: "m", hook: "h", requestId, position: seq * tokens, seq, dtype: "f32" },
    new Float32Array(tokens * D),
    tokens,
    D,
  );
  return {
    subject: tapSubject("m", "h"),
    headers,
    data: payload,
    ...(opts.reply ? { reply: opts.reply } : {}),
  } as BusMessage;
}

function setup(opts: { maxQueueTokens?: number; onMessage?: (m: BusMessage) => void } = {}) {
  const bus = new MemoryBus();
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 });
  const batcher = new MicroBatcher<Frame>({
    maxBatchTokens: 4,
    maxWaitMs: 1,
    maxQueueTokens: opts.maxQueueTokens ?? 64,
  });
  const lost: [string, number, number][] = [];
  const intake = new Intake({
    expect: { model: "m", hook: "h", dIn: D },
    batcher,
    seqs: new SequenceTracker({}),
    taps: new TapChannel({ model: "m", hook: "h", bus, telemetry, log }),
    onLost: (id, from, to) => lost.push([id, from, to]),
    telemetry,
    log,
    ...(opts.onMessage ? { onMessage: opts.onMessage } : {}),
  });
  const replies: BusMessage[] = [];
  bus.subscribe("_INBOX.>", (m) => replies.push(m));
  return { telemetry, logs, batcher, lost, intake, replies };
}

Deno.test("intake: frames in order are queued and counted (the counters once the turn's messages are in)", async () => {
  const { intake, batcher, telemetry } = setup();
  intake.receive(msg("r1", 0));
  intake.receive(msg("r1", 1, { tokens: 2 }));
  assert.equal(intake.accepted, 2);
  assert.equal(batcher.queuedTokens, 3);
  await null;
  assert.equal(telemetry.value("latentwatch.frames.received"), 2);
  assert.equal(telemetry.value("latentwatch.queue.depth"), 3);
  intake.receive(msg("r1", 2));
  await null;
  assert.equal(telemetry.value("latentwatch.frames.received"), 3, "a later turn adds its own");
  assert.equal(telemetry.value("latentwatch.queue.depth"), 4);
});

Deno.test("intake: a message that is no frame is rejected by reason; a gated one is answered with an error verdict", () => {
  const { intake, telemetry, logs, replies } = setup();
  const bad = msg("r1", 3, { reply: "_INBOX.1" });
  bad.headers["Lw-Model"] = "other";
  intake.receive(bad);
  assert.equal(intake.accepted, 0);
  assert.equal(telemetry.total("latentwatch.frames.rejected"), 1);
  assert.ok(logs.some((l) => l.includes("frame.rejected") && l.includes("r1")));
  const v = parseVerdict(replies[0].data);
  assert.equal(v.verdict, "error");
  assert.equal(v.seq, 3);
  assert.match(v.reason ?? "", /^frame rejected: /);
});

Deno.test("intake: a gap is counted lost and handed on; a repeated seq is dropped", () => {
  const { intake, telemetry, lost, replies } = setup();
  intake.receive(msg("r1", 0));
  intake.receive(msg("r1", 3));
  intake.receive(msg("r1", 2, { reply: "_INBOX.2" }));
  assert.equal(intake.accepted, 2);
  assert.equal(telemetry.value("latentwatch.frames.lost"), 2);
  assert.deepEqual(lost, [["r1", 1, 3]]);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "repeated_seq" }), 1);
  assert.equal(parseVerdict(replies[0].data).reason, "frame dropped: repeated seq");
});

Deno.test("intake: past the queue bound a frame is dropped as queue_full or frame_too_large", () => {
  const { intake, telemetry } = setup({ maxQueueTokens: 4 });
  intake.receive(msg("r1", 0, { tokens: 3 }));
  intake.receive(msg("r2", 0, { tokens: 3 }));
  intake.receive(msg("r3", 0, { tokens: 5 }));
  assert.equal(intake.accepted, 1);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "queue_full" }), 1);
  assert.equal(telemetry.value("latentwatch.tokens.dropped", { reason: "queue_full" }), 3);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "frame_too_large" }), 1);
});

Deno.test("intake: a throwing onMessage never reaches the bus client; the message is counted dropped", () => {
  const { intake, telemetry, logs } = setup({
    onMessage: () => {
      throw new Error("recorder broke");
    },
  });
  intake.receive(msg("r1", 0));
  assert.equal(intake.accepted, 0);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "internal_error" }), 1);
  assert.ok(logs.some((l) => l.includes("internal_error") && l.includes("r1")));
});
