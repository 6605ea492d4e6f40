/**
 * The sink contract against a real nats-server (stopped while failing,
 * restarted on the same port and store when mended): the native alert sink
 * without and with its spool, and a rendered `type: jetstream` publication.
 * What the stream holds is read back from the stream itself.
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNatsBus } from "../../bus/nats_bus.ts";
import { findNatsServer, type NatsServerProcess, startNatsServer } from "../../bus/nats_server.ts";
import { Logger } from "../../shared/log.ts";
import assert from "node:assert/strict";
import { contractAlert, type ContractReceiver, runSinkContract } from "../contract_test_suite.ts";
import type { AlertSink } from "../sink.ts";
import { renderPayload } from "../renderings.ts";
import { JetStreamSink } from "./sink.ts";

const STREAM = "LW_CONTRACT";
const SUBJECT = "latentwatch.contract.alerts";

interface Broker extends ContractReceiver {
  server: NatsServerProcess;
}

async function broker(): Promise<Broker> {
  const server = await startNatsServer();
  const seen = new Map<number, string>();
  const dec = new TextDecoder();
  const read = async (): Promise<string[]> => {
    // the stream is read while the server is up; while it is down, what was read before
    const nc = await connect({ servers: server.url, reconnect: false, timeout: 500 }).catch(() =>
      null
    );
    if (nc) {
      try {
        const jsm = await jetstreamManager(nc);
        const info = await jsm.streams.info(STREAM);
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          if (seen.has(seq)) continue;
          const m = await jsm.streams.getMessage(STREAM, { seq });
          if (m) seen.set(seq, dec.decode(m.data));
        }
      } catch {
        /* no stream yet */
      } finally {
        await nc.close();
      }
    }
    return [...seen.values()];
  };
  return {
    server,
    received: read,
    fail: () => server.stop(),
    heal: () => server.restart(),
    close: () => server.stop(),
  };
}

/** The sink, closing its own bus connection when it closes. */
async function sinkOn(
  rx: ContractReceiver,
  maxQueue: number,
  variant: "memory" | "spool" | "rendered",
): Promise<AlertSink> {
  const bus = await connectNatsBus({
    url: (rx as Broker).server.url,
    reconnectWaitMs: 50,
    ackTimeoutMs: 500,
  });
  const spooled = variant !== "memory";
  const sink = new JetStreamSink(bus, {
    name: `jetstream:${variant}`,
    subject: SUBJECT,
    stream: { name: STREAM, subjects: [SUBJECT], duplicateWindowMs: 60_000 },
    maxQueue,
    initialBackoffMs: 20,
    maxBackoffMs: 200,
    pollMs: 20,
    ...(spooled
      ? {
        spoolDir: await Deno.makeTempDir({ prefix: "lw-js-contract-" }),
        // the spool is the queue that bounds what is accepted while NATS is down
        spool: { maxRecords: maxQueue },
      }
      : {}),
    ...(variant === "rendered"
      ? {
        rendering: {
          id: "ecs",
          contentType: "application/json",
          render: (a) => renderPayload(a, { shape: "document", format: "ecs" }),
        },
      }
      : {}),
    log: new Logger({ quiet: true, write: () => {} }),
  });
  const close = sink.close.bind(sink);
  sink.close = async () => {
    await close();
    await bus.close();
  };
  return sink;
}

const missing = (await findNatsServer()) === null ? "nats-server not installed" : undefined;

for (const variant of ["memory", "spool", "rendered"] as const) {
  runSinkContract({
    name: `jetstream (${variant})`,
    ...(missing ? { ignore: missing } : {}),
    receiver: broker,
    newSink: (rx, { maxQueue }) => sinkOn(rx, maxQueue, variant),
  });
}

Deno.test({
  name:
    "jetstream sink: a stream check JetStream does not answer in time is deferred; the first publish creates the stream",
  ...(missing ? { ignore: true } : {}),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const rx = await broker();
    const bus = await connectNatsBus({
      url: rx.server.url,
      reconnectWaitMs: 50,
      ackTimeoutMs: 500,
    });
    const lines: string[] = [];
    const sink = new JetStreamSink(bus, {
      name: "jetstream:deferred",
      subject: SUBJECT,
      stream: { name: STREAM, subjects: [SUBJECT], duplicateWindowMs: 60_000 },
      maxQueue: 16,
      initialBackoffMs: 20,
      maxBackoffMs: 200,
      pollMs: 20,
      log: new Logger({ write: (l) => lines.push(l) }),
    });
    try {
      // connected, but the server answers nothing (as a cluster electing its JetStream leader)
      rx.server.signal("SIGSTOP");
      const resume = setTimeout(() => rx.server.signal("SIGCONT"), 6_000);
      await sink.start().finally(() => clearTimeout(resume));
      rx.server.signal("SIGCONT");
      const deferred = lines.filter((l) => l.includes("alert.stream_check_deferred"));
      assert.equal(deferred.length, 1, lines.join("\n"));
      assert.match(deferred[0], /LW_CONTRACT/);
      assert.ok(sink.submit(contractAlert()));
      assert.equal(await sink.drain(10_000), 0);
      assert.equal(
        (await rx.received()).length,
        1,
        "the alert is in the stream the publish created",
      );
    } finally {
      rx.server.signal("SIGCONT");
      await sink.close();
      await bus.close();
      await rx.close();
    }
  },
});
