/**
 * Pipeline behaviour that needs exact control over timing, on the in-process
 * bus (delivery is synchronous, so a burst of frames arrives before the encode
 * worker runs) and the plain-TypeScript reference encoder. The same pipeline
 * over a real nats-server is tested in tests/serve_test.ts; the last test
 * here publishes its alerts to a real nats-server too (the release of alerts
 * the spool refused depends on real publish acks and a real outage).
 */
import assert from "node:assert/strict";
import { MemoryBus } from "../bus/memory_bus.ts";
import { encodeFrame } from "../core/frame/encode.ts";
import { tapSubject, tapSubjectFilter } from "../core/frame/subjects.ts";
import { compilePolicySet } from "../core/policy/compile.ts";
import { parsePolicyFileDef } from "../config/policy_file.ts";
import { ReferenceEncoder } from "../core/reference_encoder.ts";
import type { Encoder, SaeWeights } from "../core/sae.ts";
import { SeqCheckpoints } from "./checkpoints.ts";
import { Logger } from "../shared/log.ts";
import { Pipeline, type PipelineOptions } from "./pipeline.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { JetStreamSink } from "../sinks/jetstream/sink.ts";
import type { AlertSink, Durability, DurableSink } from "../sinks/sink.ts";
import { type Alert, alertId } from "../core/alert.ts";
import { connectNatsBus } from "../bus/nats_bus.ts";
import { startNatsServer } from "../bus/nats_server.ts";
import { readAlerts, waitUntil } from "../../tests/helpers/stream.ts";

const D = 4;
/** Identity-like SAE: latent i reads input dimension i (relu), so values are known by hand. */
const SAE: SaeWeights = {
  format: "test",
  architecture: "standard",
  dIn: D,
  dSae: D,
  hookName: null,
  modelName: null,
  dtype: "float32",
  applyBDecToInput: false,
  wEnc: new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]),
  bEnc: new Float32Array(D),
  wDec: new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]),
  bDec: new Float32Array(D),
  source: "identity",
};
/** One v1 rule: dimension 0 above 1 (v1 rules fire on every frame where they hold). */
const POLICIES = () =>
  compilePolicySet(
    [parsePolicyFileDef(
      "version: 1\nrules:\n  - id: dim0\n    title: dimension 0 high\n    severity: high\n" +
        "    when: { sae: s, latent: 0, above: 1 }\n",
      "inline.yaml",
    )],
    new Map([["s", { kind: "sae" as const, dSae: D }]]),
  );

/** The JetStream sink on the in-process bus (no spool: these tests check what is lost). */
function sinkFor(bus: MemoryBus, telemetry: Telemetry, log: Logger): JetStreamSink {
  return new JetStreamSink(bus, {
    subject: "alerts.t",
    stream: { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 },
    maxQueue: 100,
    telemetry,
    log,
  });
}

function setup(
  over: {
    maxQueueTokens?: number;
    maxBatchTokens?: number;
    encoder?: Encoder;
    checkpoints?: SeqCheckpoints;
    /** Replaces or adds options (sinks, durable, onAlert). */
    more?: Partial<PipelineOptions>;
  } = {},
) {
  const bus = new MemoryBus();
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 });
  const pipeline = new Pipeline({
    monitor: "t",
    model: "m",
    hook: "h",
    subject: tapSubjectFilter("m", "h"),
    dIn: D,
    encoders: new Map([["s", over.encoder ?? new ReferenceEncoder(SAE)]]),
    policies: POLICIES(),
    ...(over.checkpoints ? { checkpoints: over.checkpoints } : {}),
    batching: {
      maxBatchTokens: over.maxBatchTokens ?? 4,
      maxWaitMs: 1,
      maxQueueTokens: over.maxQueueTokens ?? 64,
    },
    sinks: [sinkFor(bus, telemetry, log)],
    bus,
    telemetry,
    log,
    ...over.more,
  });
  const send = (requestId: string, seq: number, tokens: number, value = 0) => {
    const data = new Float32Array(tokens * D).fill(0);
    for (let t = 0; t < tokens; t++) data[t * D] = value;
    const f = encodeFrame(
      { model: "m", hook: "h", requestId, position: seq * tokens, seq, dtype: "f32" },
      data,
      tokens,
      D,
    );
    bus.publish(tapSubject("m", "h"), f.payload, f.headers);
  };
  return { bus, telemetry, logs, pipeline, send };
}

Deno.test("pipeline: a burst past the token bound is dropped, counted and logged, frame by frame", async () => {
  const { bus, telemetry, logs, pipeline, send } = setup({ maxQueueTokens: 8 });
  await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
  pipeline.start();
  // 40 tokens at once: the waiting worker takes the first frame (4 tokens), the queue holds 8 more
  for (let i = 0; i < 10; i++) send(`r${i}`, 0, 4, 2);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "queue_full" }), 7);
  assert.equal(telemetry.value("latentwatch.tokens.dropped", { reason: "queue_full" }), 28);
  assert.equal(logs.filter((l) => l.startsWith("error frame.dropped reason=queue_full")).length, 7);
  send("big", 0, 9, 2); // larger than the whole queue: never fits
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "frame_too_large" }), 1);
  await pipeline.idle();
  assert.equal(telemetry.total("latentwatch.tokens.encoded"), 12);
  assert.deepEqual(
    bus.streamMessages("A").map((m) => JSON.parse(new TextDecoder().decode(m.data)).requestId),
    [
      "r0",
      "r1",
      "r2",
    ],
  );
  await pipeline.stop();
});

Deno.test("pipeline: gaps in Lw-Seq are counted as lost; a repeated seq is dropped, not evaluated twice", async () => {
  const { bus, telemetry, logs, pipeline, send } = setup();
  await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
  pipeline.start();
  send("a", 0, 1, 5); // fires
  send("a", 3, 1); // seq 1 and 2 never came
  send("a", 0, 1, 5); // the first frame again (a tap retry)
  send("a", 2, 1); // late
  await pipeline.idle();
  assert.equal(telemetry.total("latentwatch.frames.lost"), 2);
  assert.equal(telemetry.total("latentwatch.frames.out_of_order"), 2);
  assert.equal(telemetry.value("latentwatch.frames.dropped", { reason: "repeated_seq" }), 2);
  assert.equal(telemetry.total("latentwatch.tokens.encoded"), 2, "only seq 0 and 3 were encoded");
  assert.equal(telemetry.total("latentwatch.alerts"), 1, "the re-sent frame raised nothing more");
  assert.ok(
    logs.some((l) =>
      l.includes("frame.lost") && l.includes("expected_seq=1") && l.includes("found_seq=3")
    ),
  );
  await pipeline.stop();
});

/** A sink that keeps what it is given (or throws on every submit). */
function memorySink(name: string, opts: { throws?: boolean } = {}) {
  const got: Alert[] = [];
  const sink: AlertSink = {
    name,
    start: () => Promise.resolve(),
    submit: (alert) => {
      if (opts.throws) throw new Error(`${name} is broken`);
      got.push(alert);
      return true;
    },
    drain: () => Promise.resolve(0),
    close: () => Promise.resolve(),
    stats: { queued: 0, delivered: 0, dropped: {}, retries: 0 },
  };
  return { sink, got };
}

Deno.test("pipeline: a throwing sink, onAlert or durable write is counted and logged; processing goes on", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: PromiseRejectionEvent) => {
    unhandled.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const broken = memorySink("broken", { throws: true });
    const good = memorySink("good");
    let persisted = 0;
    const durable: DurableSink = {
      ...memorySink("durable").sink,
      persist: (alerts) => {
        // the third batch's write fails outright; the others alternate the two Durability kinds
        if (++persisted === 3) throw new Error("disk on fire");
        return alerts.map((): Durability => persisted % 2 === 0 ? true : Promise.resolve(true));
      },
    };
    let onAlertCalls = 0;
    const { telemetry, logs, pipeline, send } = setup({
      more: {
        sinks: [durable, broken.sink, good.sink],
        durable,
        onAlert: () => {
          onAlertCalls++;
          throw new Error("display crashed");
        },
      },
    });
    pipeline.start();
    for (let i = 0; i < 6; i++) {
      send(`r${i}`, 0, 1, 5); // one frame per batch, each raising one alert
      // bounded: a dead processing loop never gets idle
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        pipeline.idle(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`frame r${i} never processed`)), 5000);
        }),
      ]).finally(() => clearTimeout(timer));
    }
    await new Promise((r) => setTimeout(r, 10)); // the promised releases
    assert.deepEqual(
      good.got.map((a) => a.requestId),
      ["r0", "r1", "r3", "r4", "r5"],
      "every alert but the failed batch's reached the good sink",
    );
    assert.equal(onAlertCalls, 5);
    assert.equal(telemetry.value("latentwatch.pipeline.errors", { stage: "on_alert" }), 5);
    assert.equal(telemetry.value("latentwatch.pipeline.errors", { stage: "sink_submit" }), 5);
    assert.equal(telemetry.value("latentwatch.pipeline.errors", { stage: "batch" }), 1);
    assert.equal(telemetry.total("latentwatch.alerts"), 5);
    assert.ok(pipeline.processing, "the processing loop is alive");
    assert.ok(
      logs.some((l) =>
        l.startsWith("error pipeline.error") && l.includes("stage=sink_submit") &&
        l.includes("sink=broken") && l.includes("broken is broken")
      ),
      logs.join("\n"),
    );
    assert.ok(logs.some((l) => l.includes("stage=batch") && l.includes("disk on fire")));
    await pipeline.stop();
    assert.ok(pipeline.processing, "stopped on purpose: not reported as a dead loop");
    assert.deepEqual(unhandled, []);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});

/** The reference encoder, each call held until the test lets it go (`entered` counts calls). */
function gatedEncoder() {
  const enc = new ReferenceEncoder(SAE);
  const gates: (() => void)[] = [];
  const state = { entered: 0 };
  const encoder: Encoder = {
    dIn: D,
    dSae: D,
    encode: async (x, n) => {
      state.entered++;
      await new Promise<void>((r) => gates.push(r));
      return enc.encode(x, n);
    },
    close: () => enc.close(),
  };
  return { encoder, state, release: () => gates.shift()?.() };
}

Deno.test("pipeline: checkpoints keep processed and counted-lost apart; a restart at any moment counts each frame never processed exactly once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-ckpt-pipe-" });
  try {
    const path = `${dir}/requests.ckpt`;
    const checkpoints = SeqCheckpoints.open(path);
    const gated = gatedEncoder();
    const { bus, telemetry, pipeline, send } = setup({ encoder: gated.encoder, checkpoints });
    await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
    pipeline.start();
    /** What a SIGKILL now would leave: a copy of the file as it stands. */
    let kills = 0;
    const killNow = () => {
      const copy = `${dir}/kill-${kills++}.ckpt`;
      Deno.copyFileSync(path, copy);
      return copy;
    };
    /** A new run on what a kill left, whose first frame of "a" has `seq`: the frames it counts lost. */
    const restart = async (copy: string, seq: number) => {
      const again = `${dir}/run-${kills++}.ckpt`; // each restart on its own copy
      Deno.copyFileSync(copy, again);
      const cp = SeqCheckpoints.open(again);
      const run = setup({ checkpoints: cp });
      await run.bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
      run.pipeline.start();
      run.send("a", seq, 1);
      await run.pipeline.idle();
      await run.pipeline.stop();
      cp.close();
      return run.telemetry.total("latentwatch.frames.lost_at_restart");
    };
    const until = async (ok: () => boolean) => {
      while (!ok()) await new Promise((r) => setTimeout(r, 1));
    };

    send("a", 0, 1); // taken by the worker at once: held in encode
    await until(() => gated.state.entered === 1);
    send("a", 1, 1); // queued
    send("a", 2, 1); // queued
    send("a", 5, 1); // queued; 3 and 4 never came: counted lost now, at intake
    assert.equal(telemetry.total("latentwatch.frames.lost"), 2);
    // killed now: nothing processed; 0, 1, 2 and 5 were queued, 3 and 4 already counted
    const k0 = killNow();
    gated.release(); // frame 0 done; 1, 2 and 5 go in the next batch, held in encode
    await until(() => gated.state.entered === 2);
    const k1 = killNow(); // 0 processed; 1, 2 and 5 queued, 3 and 4 counted
    gated.release();
    await pipeline.idle();
    const k2 = killNow(); // all processed
    await pipeline.stop();
    checkpoints.close();

    // the next run's first frame of "a" is seq 7: 6 was sent while no sidecar listened
    assert.equal(await restart(k0, 7), 5, "0, 1, 2, 5 queued and 6 unsent: 3 and 4 not again");
    assert.equal(await restart(k1, 7), 4, "1, 2, 5 queued and 6 unsent: 3 and 4 not again");
    assert.equal(await restart(k2, 7), 1, "only 6");
    // the first frame after the restart is inside the gap counted before (a resend): never under
    assert.equal(await restart(k1, 4), 2, "1 and 2 (3 counted before)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pipeline: a frame larger than a batch is encoded in batch-sized calls", async () => {
  const { bus, telemetry, pipeline, send } = setup({ maxBatchTokens: 4, maxQueueTokens: 64 });
  await bus.ensureStream({ name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
  const sizes: number[] = [];
  const enc = new ReferenceEncoder(SAE);
  const counting = {
    dIn: D,
    dSae: D,
    encode: (x: Float32Array, n: number) => {
      sizes.push(n);
      return enc.encode(x, n);
    },
    close: () => enc.close(),
  };
  // swap in the counting encoder through a fresh pipeline with the same bus
  const p = new Pipeline({
    monitor: "t",
    model: "m",
    hook: "h",
    subject: tapSubjectFilter("m", "h"),
    dIn: D,
    encoders: new Map([["s", counting]]),
    policies: POLICIES(),
    batching: { maxBatchTokens: 4, maxWaitMs: 1, maxQueueTokens: 64 },
    sinks: [sinkFor(bus, telemetry, new Logger({ quiet: true }))],
    bus,
    telemetry,
    log: new Logger({ quiet: true }),
  });
  p.start();
  send("long", 0, 10, 3);
  await p.idle();
  assert.deepEqual(sizes, [4, 4, 2]);
  const [alert] = bus.streamMessages("A").map((m) => JSON.parse(new TextDecoder().decode(m.data)));
  assert.equal(alert.evidence.length, 10, "every token of the frame was evaluated");
  await p.stop();
  await pipeline.stop();
});

Deno.test("pipeline: alerts still undelivered at the shutdown deadline are counted as dropped", async () => {
  const { bus, telemetry, logs, pipeline, send } = setup();
  pipeline.start();
  send("r", 0, 1, 5); // fires; the stream was never created and then the bus goes away
  await bus.close();
  await new Promise((r) => setTimeout(r, 20));
  const undelivered = await pipeline.stop(200);
  assert.equal(undelivered, 1, logs.join("\n"));
  assert.equal(
    telemetry.value("latentwatch.alerts.dropped", { reason: "shutdown", sink: "jetstream" }),
    1,
  );
  assert.ok(
    logs.some((l) => l.startsWith("error alert.dropped sink=jetstream reason=shutdown")),
    logs.join("\n"),
  );
  await new Promise((r) => setTimeout(r, 300)); // the retry loop notices and stops
});

/** Records what the pipeline hands it, and whether the stream had acknowledged it by then. */
class RecordingSink implements AlertSink {
  readonly name = "recording";
  readonly got: { id: string; ackedBefore: boolean }[] = [];
  constructor(readonly acked: ReadonlySet<string>) {}
  readonly stats = { queued: 0, delivered: 0, dropped: {}, retries: 0 };
  start(): Promise<void> {
    return Promise.resolve();
  }
  submit(alert: Alert): boolean {
    this.got.push({ id: alert.id, ackedBefore: this.acked.has(alert.id) });
    return true;
  }
  drain(): Promise<number> {
    return Promise.resolve(0);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("pipeline on nats-server: an alert the spool refuses reaches the other sinks only once the stream acknowledged it, never when dropped", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-refused-" });
  const bus = await connectNatsBus({ url: server.url, reconnectWaitMs: 100, ackTimeoutMs: 1000 });
  // frames come in on the in-process bus, so they keep coming while nats-server is down
  const tapBus = new MemoryBus();
  const telemetry = new Telemetry();
  const logs: string[] = [];
  const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 10_000 });
  const acked = new Set<string>();
  const durable = new JetStreamSink(bus, {
    subject: "alerts.refused",
    stream: { name: "REFUSED", subjects: ["alerts.refused"], duplicateWindowMs: 60_000 },
    spoolDir: `${dir}/spool`,
    // one record waiting at most: of a batch's three alerts, the spool takes the
    // first and refuses the other two (spool_full)
    spool: { maxRecords: 1 },
    maxBackoffMs: 200,
    telemetry,
    log,
    onPublished: (a) => acked.add(a.id),
  });
  const other = new RecordingSink(acked);
  const pipeline = new Pipeline({
    monitor: "t",
    model: "m",
    hook: "h",
    subject: tapSubjectFilter("m", "h"),
    dIn: D,
    encoders: new Map([["s", new ReferenceEncoder(SAE)]]),
    policies: POLICIES(),
    // three one-token frames make one batch: one write-ahead for their three alerts
    batching: { maxBatchTokens: 3, maxWaitMs: 2000, maxQueueTokens: 64 },
    sinks: [durable, other],
    durable,
    bus: tapBus,
    telemetry,
    log,
  });
  /** Send one batch of three firing frames; the ids of their alerts, in order. */
  const batch = async (tag: string): Promise<string[]> => {
    const batches = telemetry.total("latentwatch.batches");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const data = new Float32Array(D);
      data[0] = 5;
      const requestId = `${tag}-${i}`;
      const f = encodeFrame(
        { model: "m", hook: "h", requestId, position: 0, seq: 0, dtype: "f32" },
        data,
        1,
        D,
      );
      tapBus.publish(tapSubject("m", "h"), f.payload, f.headers);
      ids.push(alertId("t", requestId, "dim0", 0));
    }
    await waitUntil(() => telemetry.total("latentwatch.batches") > batches, `batch ${tag} encoded`);
    assert.equal(
      telemetry.total("latentwatch.batches"),
      batches + 1,
      "the three frames in one batch",
    );
    return ids;
  };
  const dropped = () =>
    telemetry.value("latentwatch.alerts.dropped", { reason: "spool_full", sink: "jetstream" });
  const seen = (id: string) => other.got.find((g) => g.id === id);
  try {
    await durable.start();
    pipeline.start();

    // NATS up: the first alert is written ahead and released at once (before
    // its ack); the two the spool refused are published from memory and
    // released once the stream acknowledged them
    const up = await batch("up");
    await waitUntil(() => up.every((id) => seen(id)), "the batch released to the other sink");
    assert.equal(dropped(), 0, logs.join("\n"));
    assert.deepEqual(
      seen(up[0]),
      { id: up[0], ackedBefore: false },
      "written ahead: released at once",
    );
    for (const id of up.slice(1)) {
      assert.deepEqual(
        seen(id),
        { id, ackedBefore: true },
        "refused by the spool: released after its ack",
      );
    }

    // NATS down: the refused alerts can be neither spooled nor published, so
    // they are dropped (counted, logged) and no other sink ever sees them
    await waitUntil(() => durable.stats.spoolPending === 0, "the spool emptied");
    await server.stop();
    await waitUntil(() => !bus.connected, "the sink's bus sees the outage");
    const down = await batch("down");
    await waitUntil(() => seen(down[0]) !== undefined, "the written-ahead alert released");
    assert.equal(dropped(), 2, "the two refused alerts dropped as spool_full");
    for (const id of down.slice(1)) {
      assert.ok(
        logs.some((l) => l.startsWith("error alert.dropped") && l.includes(`alert=${id}`)),
        `the drop of ${id} is logged:\n${logs.join("\n")}`,
      );
    }
    assert.deepEqual(seen(down[0]), { id: down[0], ackedBefore: false }, "written ahead: released");

    await server.restart();
    await waitUntil(
      () => acked.has(down[0]),
      "the spooled alert delivered after the outage",
      10_000,
    );
    await new Promise((r) => setTimeout(r, 300)); // a late release would show by now
    for (const id of down.slice(1)) {
      assert.equal(seen(id), undefined, "a dropped alert reaches no sink");
    }
    const stored = (await readAlerts(server.url, "REFUSED")).map((m) => m.msgId).sort();
    assert.deepEqual(stored, [...up, down[0]].sort(), "the stream holds what the other sink saw");
    assert.deepEqual(other.got.map((g) => g.id).sort(), stored);
  } finally {
    await pipeline.stop(2000);
    await durable.close();
    await tapBus.close();
    await bus.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
});

/** `p`, or a failure naming `what` after `ms` (a swap that is never released must not hang the suite). */
function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

Deno.test("pipeline: a swapped-out generation is released at once when idle, else after its last batch", async () => {
  const gate = gatedEncoder();
  const { pipeline, send } = setup({ encoder: gate.encoder });
  pipeline.start();
  try {
    // batches run and finish on the first generation: it stays current, its count back at 0
    for (let seq = 0; seq < 3; seq++) {
      send("r1", seq, 4);
      await waitUntil(() => gate.state.entered === seq + 1, "the batch reaches the encoder");
      gate.release();
      await pipeline.idle();
    }
    const first = pipeline.generation;
    const second = { ...first, encoders: new Map(first.encoders) };
    assert.equal(await pipeline.swap(second), first, "an idle generation is released at once");
    // a batch in flight on the second generation holds it past the next swap
    send("r1", 3, 4);
    await waitUntil(() => gate.state.entered === 4, "the batch reaches the encoder");
    let released = false;
    const third = { ...second, encoders: new Map(second.encoders) };
    const swapped = pipeline.swap(third).then((g) => {
      released = true;
      return g;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(released, false, "released while its batch still ran");
    gate.release();
    assert.equal(await within(swapped, "the second generation's release"), second);
    // the third generation, used and idle again, is released at once too
    send("r1", 4, 4);
    await waitUntil(() => gate.state.entered === 5, "the batch reaches the encoder");
    gate.release();
    await pipeline.idle();
    assert.equal(await pipeline.swap({ ...third }), third);
  } finally {
    while (gate.state.entered > 5) gate.release();
    await pipeline.stop();
  }
});

Deno.test("pipeline: a generation swapped out and back while its batch runs is still released", async () => {
  const gate = gatedEncoder();
  const { pipeline, send } = setup({ encoder: gate.encoder });
  pipeline.start();
  try {
    const first = pipeline.generation;
    send("r1", 0, 4);
    await waitUntil(() => gate.state.entered === 1, "the batch reaches the encoder");
    const away = pipeline.swap({ ...first, encoders: new Map(first.encoders) });
    const second = pipeline.generation;
    assert.equal(await pipeline.swap(first), second, "the second, never used, is released at once");
    gate.release();
    assert.equal(
      await within(away, "the first generation's release"),
      first,
      "the first is released once its batch is done",
    );
  } finally {
    await pipeline.stop();
  }
});
