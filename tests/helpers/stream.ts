/**
 * Read back what a JetStream stream holds, through a separate connection,
 * so tests compare the alerts that should exist with those stored; and a
 * nats-server of a test's own, with a bus on it, that the test can make go
 * away.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Alert } from "../../src/core/alert.ts";
import { connectNatsBus, type NatsBus } from "../../src/bus/nats_bus.ts";
import { type NatsServerProcess, startNatsServer } from "../../src/bus/nats_server.ts";

/** Every message in `stream`, decoded as JSON alerts, with their `Nats-Msg-Id`. */
export async function readAlerts(
  url: string,
  stream: string,
): Promise<{ alert: Alert; msgId: string; seq: number }[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: { alert: Alert; msgId: string; seq: number }[] = [];
    for (
      let seq = info.state.first_seq;
      seq <= info.state.last_seq && info.state.messages > 0;
      seq++
    ) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      out.push({ alert: m.json<Alert>(), msgId: m.header?.get("Nats-Msg-Id") ?? "", seq: m.seq });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/**
 * Poll `cond` every 10 ms until it holds or `timeoutMs` passes (then throw
 * `what`; a function is called then, so it can report the state at the timeout).
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const said = typeof what === "function" ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${said}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A nats-server of one test's own, and a {@linkcode NatsBus} connected to it. */
export interface Broker {
  server: NatsServerProcess;
  bus: NatsBus;
  /** Stop the server and wait (5 s at most) until the bus sees NATS away. */
  away(): Promise<void>;
}

/**
 * Run `body` against a fresh nats-server (JetStream on, an empty store) and
 * a bus on it that reconnects every 50 ms and waits 500 ms for a publish
 * ack, so an outage or a silent server shows within a second. Afterwards the
 * bus is closed and the server stopped, its store removed, whether `body`
 * stopped (or paused) the server or not.
 */
export async function withBroker(body: (b: Broker) => Promise<void>): Promise<void> {
  const server = await startNatsServer();
  try {
    const bus = await connectNatsBus({ url: server.url, reconnectWaitMs: 50, ackTimeoutMs: 500 });
    const away = async () => {
      await server.stop();
      await waitUntil(() => !bus.connected, "the bus to see NATS away", 5_000);
    };
    try {
      await body({ server, bus, away });
    } finally {
      server.signal("SIGCONT"); // a server the test paused answers its close
      await bus.close();
    }
  } finally {
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
}
