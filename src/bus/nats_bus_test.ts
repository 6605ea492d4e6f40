/**
 * NatsBus against a real nats-server: concurrent stream set-up.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNatsBus } from "./nats_bus.ts";
import { startNatsServer } from "./nats_server.ts";

async function withServer(fn: (url: string) => Promise<void>): Promise<void> {
  const server = await startNatsServer();
  try {
    await fn(server.url);
  } finally {
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("nats bus: concurrent ensureStream calls with different subjects all end up in the stream", () =>
  withServer(async (url) => {
    const bus = await connectNatsBus({ url });
    const nc = await connect({ servers: url });
    try {
      const subjects = Array.from({ length: 8 }, (_, i) => `latentwatch.render.s${i}`);
      // the first creates the stream, the rest update it, all at once (what
      // the monitor does when it starts every rendered JetStream sink together)
      await Promise.all(
        subjects.map((subject) =>
          bus.ensureStream({ name: "RACE", subjects: [subject], duplicateWindowMs: 60_000 })
        ),
      );
      // and again on a stream that exists
      const more = Array.from({ length: 8 }, (_, i) => `latentwatch.render.t${i}`);
      await Promise.all(
        more.map((subject) =>
          bus.ensureStream({ name: "RACE", subjects: [subject], duplicateWindowMs: 60_000 })
        ),
      );
      const info = await (await jetstreamManager(nc)).streams.info("RACE");
      assert.deepEqual(
        [...(info.config.subjects ?? [])].sort(),
        [...subjects, ...more].sort(),
      );
    } finally {
      await nc.close();
      await bus.close();
    }
  }));
