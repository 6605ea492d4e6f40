/**
 * NatsStreams on a real nats-server: a missing stream is created as the spec
 * says, an existing one only gains the subjects it lacks, two clients
 * creating one stream at once both get their subjects in, and a refused
 * set-up fails its own call without blocking the next one for that name.
 */
import assert from "node:assert/strict";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { NatsStreams } from "./nats_streams.ts";
import { startNatsServer } from "./nats_server.ts";

/** A fresh server, two clients of it, and a stream manager on the first. */
async function onFreshServer(
  body: (nc: NatsConnection, other: NatsConnection, jsm: JetStreamManager) => Promise<void>,
): Promise<void> {
  const server = await startNatsServer();
  const clients = [await connect({ servers: server.url }), await connect({ servers: server.url })];
  try {
    await body(clients[0], clients[1], await jetstreamManager(clients[0]));
  } finally {
    for (const nc of clients) await nc.close();
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("nats streams: a missing stream is created with the spec's subjects, window and replicas", () =>
  onFreshServer(async (nc, _other, jsm) => {
    await new NatsStreams(nc).ensure({
      name: "ALERTS",
      subjects: ["lw.alerts.a", "lw.alerts.b"],
      duplicateWindowMs: 90_000,
    });
    const { config } = await jsm.streams.info("ALERTS");
    assert.deepEqual(config.subjects, ["lw.alerts.a", "lw.alerts.b"]);
    assert.equal(config.duplicate_window, 90_000_000_000); // nanoseconds
    assert.equal(config.num_replicas, 1);
  }));

Deno.test("nats streams: an existing stream gains only the subjects it lacks, its other settings kept", () =>
  onFreshServer(async (nc, _other, jsm) => {
    await jsm.streams.add({ name: "KEPT", subjects: ["lw.kept.a"], max_msgs: 42 });
    const streams = new NatsStreams(nc);
    await streams.ensure({
      name: "KEPT",
      subjects: ["lw.kept.b", "lw.kept.a"],
      duplicateWindowMs: 1_000,
    });
    const { config } = await jsm.streams.info("KEPT");
    assert.deepEqual(config.subjects, ["lw.kept.a", "lw.kept.b"]);
    assert.equal(config.max_msgs, 42);
    // nothing missing: the stream is left as it is
    await streams.ensure({ name: "KEPT", subjects: ["lw.kept.a"], duplicateWindowMs: 1_000 });
    assert.deepEqual((await jsm.streams.info("KEPT")).config.subjects, ["lw.kept.a", "lw.kept.b"]);
  }));

Deno.test("nats streams: two clients creating one stream at once both get their subject in", () =>
  onFreshServer(async (nc, other, jsm) => {
    // whichever create loses finds the name in use and adds its subject to the winner's stream
    // (one call per client: two clients' concurrent updates are not serialised)
    await Promise.all([
      new NatsStreams(nc).ensure({
        name: "RACE2",
        subjects: ["lw.race.a"],
        duplicateWindowMs: 1_000,
      }),
      new NatsStreams(other).ensure({
        name: "RACE2",
        subjects: ["lw.race.b"],
        duplicateWindowMs: 1_000,
      }),
    ]);
    const { config } = await jsm.streams.info("RACE2");
    assert.deepEqual([...(config.subjects ?? [])].sort(), ["lw.race.a", "lw.race.b"]);
  }));

Deno.test("nats streams: a refused set-up fails its call, and the next call for the name still runs", () =>
  onFreshServer(async (nc, _other, jsm) => {
    await jsm.streams.add({ name: "OWNER", subjects: ["lw.taken"] });
    const streams = new NatsStreams(nc);
    // the server refuses subjects another stream holds
    const refused = streams.ensure({
      name: "LATE",
      subjects: ["lw.taken"],
      duplicateWindowMs: 1_000,
    });
    const next = streams.ensure({ name: "LATE", subjects: ["lw.free"], duplicateWindowMs: 1_000 });
    await assert.rejects(refused);
    await next;
    assert.deepEqual((await jsm.streams.info("LATE")).config.subjects, ["lw.free"]);
  }));

/**
 * `nc`, with `beforeCreate` run once just before its first stream-create
 * request goes out: a real connection, with another client let in first.
 */
function createInterleaved(nc: NatsConnection, beforeCreate: () => Promise<void>) {
  let pending: (() => Promise<void>) | null = beforeCreate;
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === "request") {
        return async (subject: string, ...rest: unknown[]) => {
          if (pending && subject.includes(".STREAM.CREATE.")) {
            const run = pending;
            pending = null;
            await run();
          }
          return (target.request as (...a: unknown[]) => unknown)(subject, ...rest);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

Deno.test("nats streams: a create that finds the name taken meanwhile adds its subjects to that stream", () =>
  onFreshServer(async (nc, other, jsm) => {
    let interleaved = false;
    const late = createInterleaved(nc, async () => {
      // the other client creates the stream between this client's lookup and its create
      await (await jetstreamManager(other)).streams.add({
        name: "RACE3",
        subjects: ["lw.race3.b"],
      });
      interleaved = true;
    });
    await new NatsStreams(late).ensure({
      name: "RACE3",
      subjects: ["lw.race3.a"],
      duplicateWindowMs: 1_000,
    });
    assert.ok(interleaved, "the other client's create ran first");
    const { config } = await jsm.streams.info("RACE3");
    assert.deepEqual(config.subjects, ["lw.race3.b", "lw.race3.a"]);
  }));
