/**
 * Read back what a JetStream stream holds, through a separate connection,
 * so tests compare the alerts that should exist with those stored.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { Alert } from "../../src/core/alert.ts";

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
