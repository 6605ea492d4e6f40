/** One batch through the stages: alerts delivered, and an encode failure that drops the batch, counted. */
import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import { MemoryBus } from "../bus/memory_bus.ts";
import type { Encoder } from "../core/sae.ts";
import { parseVerdict } from "../core/steer/parse.ts";
import { resolveSteerAction } from "../core/steer/resolve.ts";
import { Evaluator } from "../pipeline/evaluate.ts";
import { Evidence } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import { D, frame, policies, recordingEncoder } from "../pipeline/testdata/fixtures.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import { BatchStages, type EncodedBatch } from "./batch.ts";
import { AlertDelivery } from "./delivery.ts";
import { TapChannel } from "./tap_channel.ts";

const RULE = "version: 1\nrules:\n  - id: high\n    title: latent 0 high\n    severity: high\n" +
  "    when: { sae: s, latent: 0, above: 2 }\n";

function setup(
  encoder: Encoder,
  onEncoded?: (batch: EncodedBatch) => void,
  evidence = new Evidence({ topLatents: 0, ringTokens: 0, dIn: D }),
  rules = RULE,
) {
  const bus = new MemoryBus();
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 });
  const set = policies(rules, 1);
  const alerts: Alert[] = [];
  const recorded: { next: Map<string, number>; ended: string[] }[] = [];
  const checkpoints = {
    path: "cp",
    record: (next: Map<string, number>, ended: string[]) => recorded.push({ next, ended }),
  } as unknown as SeqCheckpoints;
  const taps = new TapChannel({ model: "m", hook: "h", bus, telemetry, log });
  const stages = new BatchStages({
    dIn: D,
    maxBatchTokens: 8,
    evaluator: new Evaluator(set, { monitor: "t", dIn: D }),
    evidence,
    taps,
    delivery: new AlertDelivery({
      sinks: [],
      checkpoints,
      telemetry,
      log,
      onAlert: (a) => alerts.push(a),
      onError: () => {},
    }),
    telemetry,
    log,
    ...(onEncoded ? { onEncoded: (_f, _l, batch) => onEncoded(batch) } : {}),
  });
  const gen: Generation = { encoders: new Map([["s", encoder]]), policies: set };
  return { bus, telemetry, logs, alerts, recorded, taps, stages, gen, checkpoints };
}

/** An encoder whose every call fails, as a lost device does. */
function failingEncoder(): Encoder {
  return {
    dIn: D,
    dSae: 1,
    encode: () => Promise.reject(new Error("device lost")),
    close: () => Promise.resolve(),
  };
}

Deno.test("batch: a batch is encoded, evaluated and its alerts delivered, the checkpoint after it", async () => {
  const calls: number[] = [];
  const { stages, gen, alerts, recorded, telemetry } = setup(recordingEncoder(calls));
  await stages.process(gen, [frame([[1, 0], [5, 0]], "r1"), frame([[0, 0]], "r2")]);
  assert.deepEqual(calls, [3]);
  assert.deepEqual(alerts.map((a) => [a.policy.id, a.requestId]), [["high", "r1"]]);
  assert.equal(telemetry.value("latentwatch.batches"), 1);
  assert.deepEqual(recorded.map((r) => [...r.next]), [[["r1", 1], ["r2", 1]]]);
});

Deno.test("batch: the onEncoded hook learns each frame's arrival (undefined where unknown) and when the batch was evaluated", async () => {
  const seen: EncodedBatch[] = [];
  const arrivals: (number | undefined)[][] = [];
  const known = frame([[1, 0]], "r1"), unknown = frame([[0, 0]], "r2");
  const { stages, gen, taps } = setup(recordingEncoder([]), (b) => {
    seen.push(b);
    arrivals.push([known, unknown].map((f) => b.receivedAt(f))); // answered during the call
  });
  taps.remember(known, { subject: "latentwatch.tap.v1.m.h.0" }, 1234.5);
  const before = performance.now();
  await stages.process(gen, [known, unknown]);
  assert.equal(seen.length, 1);
  assert.deepEqual(arrivals, [[1234.5, undefined]]);
  assert.ok(seen[0].evaluatedAt >= before && seen[0].evaluatedAt <= performance.now());
  // once the batch is done its frames' origins are let go (a weak map entry lives to a full GC)
  assert.equal(taps.receivedAt(known), undefined);
});

Deno.test("batch: a batch that fails to encode lets go of its frames' origins too", async () => {
  const { stages, gen, taps } = setup(failingEncoder());
  const gated = frame([[9, 0]], "r1");
  taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" }, 5);
  await stages.process(gen, [gated]);
  assert.equal(taps.receivedAt(gated), undefined);
});

Deno.test("batch: a batch that cannot be encoded is dropped and counted; gated frames are answered, the checkpoint still moves", async () => {
  const { bus, stages, gen, taps, alerts, recorded, telemetry, logs } = setup(failingEncoder());
  const replies: Uint8Array[] = [];
  bus.subscribe("_INBOX.>", (m) => replies.push(m.data));
  const gated = frame([[9, 0]], "r1");
  taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  await stages.process(gen, [gated, frame([[9, 0], [9, 0]], "r2")]);
  assert.equal(alerts.length, 0);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "encode_error" }), 2);
  assert.equal(telemetry.value("latentwatch.tokens.dropped", { reason: "encode_error" }), 3);
  assert.ok(logs.some((l) => l.includes("batch.encode_failed") && l.includes("r1,r2")));
  assert.equal(parseVerdict(replies[0]).reason, "encode failed: device lost");
  assert.equal(recorded.length, 1);
});

Deno.test("batch: a tap channel that throws costs the batch nothing: alerts still delivered, counted, gated frame answered", async () => {
  const calls: number[] = [];
  const { bus, stages, gen, taps, alerts, recorded, telemetry, logs } = setup(
    recordingEncoder(calls),
  );
  const replies: Uint8Array[] = [];
  bus.subscribe("_INBOX.>", (m) => replies.push(m.data));
  taps.act = () => {
    throw new Error("tap broke");
  };
  const gated = frame([[5, 0]], "r1");
  taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  await stages.process(gen, [gated, frame([[7, 0]], "r2")]);
  assert.deepEqual(alerts.map((a) => a.requestId), ["r1", "r2"]);
  assert.equal(telemetry.value("latentwatch.pipeline.errors", { stage: "tap" }), 2);
  assert.ok(logs.some((l) => l.includes("frame.tap_failed") && l.includes("tap broke")));
  assert.equal(parseVerdict(replies[0]).reason, "tap reply failed: tap broke");
  assert.equal(recorded.length, 1);
});

Deno.test("batch: the verdicts are written before the batch's evidence, alerts and checkpoint", async () => {
  const calls: number[] = [];
  const evidence = new Evidence({ topLatents: 2, ringTokens: 64, dIn: D });
  const { bus, stages, gen, taps, alerts, checkpoints, telemetry } = setup(
    recordingEncoder(calls),
    undefined,
    evidence,
  );
  gen.evidenceEncoders = gen.encoders;
  const order: string[] = [];
  recordWrites(bus, order);
  const record = checkpoints.record.bind(checkpoints);
  checkpoints.record = (next, ended) => {
    order.push("checkpoint");
    record(next, ended);
  };
  // a batch that raises nothing (nothing else awaited on the way to the checkpoint)
  const quiet = frame([[1, 0]], "r0");
  taps.remember(quiet, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.0" });
  await stages.process(gen, [quiet]);
  assert.deepEqual(order, ["reply", "write", "checkpoint"]);
  assert.equal(alerts.length, 0);
  order.length = 0;
  const gated = frame([[5, 0]], "r1");
  taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  await stages.process(gen, [gated, frame([[7, 0]], "r2")]);
  assert.deepEqual(order, ["reply", "write", "checkpoint"]);
  assert.deepEqual(alerts.map((a) => a.requestId), ["r1", "r2"]);
  // the ring still holds the batch's tokens when the alerts' evidence is read
  assert.equal(telemetry.value("latentwatch.evidence.missing", { reason: "not_in_ring" }), 0);
  assert.ok(alerts.every((a) => a.evidence[0].topLatents !== undefined));
});

const STEERING = RULE.replace("version: 1", "version: 2") +
  "  - id: stop\n    title: latent 0 very high\n    severity: high\n" +
  "    when: { sae: s, latent: 0, above: 4 }\n    actions: [alert, { steer: abort }]\n";

/**
 * The bus's publishes and their write in `order`: as the NATS client does, a
 * publish queues the socket write in a microtask. Returns the replies seen.
 */
function recordWrites(bus: MemoryBus, order: string[]): Uint8Array[] {
  const replies: Uint8Array[] = [];
  bus.subscribe("_INBOX.>", (m) => replies.push(m.data));
  const publish = bus.publish.bind(bus);
  let flushQueued = false;
  bus.publish = (subject, data, headers) => {
    order.push("reply");
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(() => {
        flushQueued = false;
        order.push("write");
      });
    }
    publish(subject, data, headers);
  };
  return replies;
}

/** An encoder that logs its calls in `order` as `name`, else as `recordingEncoder`. */
function loggedEncoder(name: string, order: string[], fail = false): Encoder {
  const inner = recordingEncoder([]);
  return {
    ...inner,
    encode: (x, tokens) => {
      order.push(name);
      return fail ? Promise.reject(new Error("device lost")) : inner.encode(x, tokens);
    },
  };
}

/**
 * The stages with STEERING's rules, a steering-ready generation whose
 * encoder logs "encode" (failing with `fail`) and verdict encoder logs
 * "verdict-encode" in `order`.
 */
function twoPassSetup(order: string[], fail = false) {
  const s = setup(loggedEncoder("encode", order, fail), undefined, undefined, STEERING);
  const gen: Generation = {
    ...s.gen,
    verdictEncoders: new Map([["s", loggedEncoder("verdict-encode", order)]]),
    steerOps: new Map(
      s.gen.policies.rules.flatMap((r) =>
        r.steer.map((a) => [a, resolveSteerAction(a, new Map(), D)])
      ),
    ),
  };
  return { s, gen };
}

Deno.test("batch: a gated batch is answered once the steering rules ran, before the other rules' encode, alerts and checkpoint", async () => {
  const order: string[] = [];
  const { s, gen } = twoPassSetup(order);
  const replies = recordWrites(s.bus, order);
  const record = s.checkpoints.record.bind(s.checkpoints);
  s.checkpoints.record = (next, ended) => {
    order.push("checkpoint");
    record(next, ended);
  };
  const gated = frame([[5, 0]], "r1");
  s.taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  await s.stages.process(gen, [gated, frame([[3, 0]], "r2")]);
  assert.deepEqual(order, ["verdict-encode", "reply", "write", "encode", "checkpoint"]);
  assert.equal(replies.length, 1);
  assert.equal(parseVerdict(replies[0]).verdict, "abort");
  // both passes' alerts, in rule order within a frame
  assert.deepEqual(s.alerts.map((a) => [a.policy.id, a.requestId]), [
    ["high", "r1"],
    ["stop", "r1"],
    ["high", "r2"],
  ]);
  assert.equal(s.telemetry.value("latentwatch.tokens.encoded", { sae: "s" }), 2);
  assert.equal(s.telemetry.value("latentwatch.batches"), 1);
  // a batch without a gated frame is encoded once, whole
  order.length = 0;
  await s.stages.process(gen, [frame([[1, 0]], "r3")]);
  assert.deepEqual(order, ["encode", "checkpoint"]);
  assert.equal(s.telemetry.value("latentwatch.tokens.encoded", { sae: "s" }), 3);
});

Deno.test("batch: when the other rules' encode fails, the gated frame keeps its one answer and the steering rule its alert; the batch is counted as dropped", async () => {
  const order: string[] = [];
  const { s, gen } = twoPassSetup(order, true);
  const replies = recordWrites(s.bus, order);
  const gated = frame([[5, 0]], "r1");
  s.taps.remember(gated, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  await s.stages.process(gen, [gated]);
  assert.deepEqual(order, ["verdict-encode", "reply", "write", "encode"]);
  assert.deepEqual(replies.map((r) => parseVerdict(r).verdict), ["abort"]);
  // the abort is on record: the steering rule's alert, from the latents it was evaluated on
  assert.deepEqual(s.alerts.map((a) => [a.policy.id, a.evidence[0].value]), [["stop", 5]]);
  assert.equal(s.telemetry.value("latentwatch.frames.dropped", { reason: "encode_error" }), 1);
  assert.ok(s.logs.some((l) => l.includes("batch.encode_failed") && l.includes("other rules")));
  assert.equal(s.recorded.length, 1); // the checkpoint moves once
});

Deno.test("batch: a batch where a request ends and starts again is evaluated in one pass, as the tap sent it", async () => {
  const order: string[] = [];
  const { s, gen } = twoPassSetup(order);
  const replies = recordWrites(s.bus, order);
  // the same request id, ended and then reused: the second is a new request, steered afresh
  const ended = { ...frame([[5, 0]], "r1"), endOfRequest: true };
  const again = frame([[6, 0]], "r1");
  s.taps.remember(ended, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.1" });
  s.taps.remember(again, { subject: "latentwatch.tap.v1.m.h.0", reply: "_INBOX.2" });
  await s.stages.process(gen, [ended, again]);
  assert.deepEqual(order, ["encode", "reply", "reply", "write"]);
  assert.deepEqual(replies.map((r) => parseVerdict(r).verdict), ["abort", "abort"]);
  assert.deepEqual(s.alerts.map((a) => a.policy.id), ["high", "stop", "high", "stop"]);
});
