/**
 * NatsStatusWatch on a stand-in connection whose status events and PONGs the
 * test controls: what each event does to `connected` and the last error,
 * which events are reported, and the liveness probe.
 */
import assert from "node:assert/strict";
import type { Status } from "@nats-io/transport-node";
import {
  type NatsStatusSource,
  NatsStatusWatch,
  type NatsStatusWatchOptions,
} from "./nats_status.ts";

/** A connection that yields the status events pushed to it and answers flushes when told to. */
class StandIn implements NatsStatusSource {
  closed = false;
  /** Whether a flush (the probe's PING) comes back. */
  answers = true;
  flushes = 0;
  readonly #queue: Status[] = [];
  #wake: (() => void) | undefined;
  #ended = false;

  push(s: Status): void {
    this.#queue.push(s);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *status(): AsyncIterable<Status> {
    for (;;) {
      const s = this.#queue.shift();
      if (s) yield s;
      else if (this.#ended) return;
      else await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  flush(): Promise<void> {
    this.flushes++;
    return this.answers ? Promise.resolve() : new Promise(() => {});
  }

  isClosed(): boolean {
    return this.closed;
  }
}

const settle = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until `cond` holds, checking every 5 ms for at most `ms`. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still false after ${ms} ms: ${cond}`);
    await settle(5);
  }
}

/** A watch without a probe on a stand-in, with what it reported. */
function watched(extra: Partial<NatsStatusWatchOptions> = {}) {
  const nc = new StandIn();
  const events: Array<{ type: string; detail: string }> = [];
  const serverErrors: Error[] = [];
  const watch = new NatsStatusWatch(nc, {
    onStatus: (e) => events.push(e),
    probe: { intervalMs: 0 },
    closing: () => false,
    onServerError: (err) => serverErrors.push(err),
    ...extra,
  });
  return { nc, watch, events, serverErrors };
}

Deno.test("nats status: disconnect clears connected and is noted, reconnect sets it again", async () => {
  const { nc, watch, events } = watched();
  assert.deepEqual(watch.health, { connected: true, delivering: true });
  nc.push({ type: "disconnect", server: "127.0.0.1:4222" });
  await settle();
  assert.equal(watch.connected, false);
  const down = watch.health;
  assert.equal(down.connected, false);
  assert.equal(down.delivering, false);
  assert.equal(down.lastError?.message, "disconnect: 127.0.0.1:4222");
  assert.ok(!Number.isNaN(Date.parse(down.lastError.at)), down.lastError.at);
  nc.push({ type: "reconnecting" });
  nc.push({ type: "ping", pendingPings: 1 });
  nc.push({ type: "reconnect", server: "127.0.0.1:4223" });
  await settle();
  assert.equal(watch.connected, true);
  // a reconnect is reported but is no error: the last error is still the disconnect
  assert.equal(watch.health.lastError?.message, "disconnect: 127.0.0.1:4222");
  assert.deepEqual(events, [
    { type: "disconnect", detail: "127.0.0.1:4222" },
    { type: "reconnect", detail: "127.0.0.1:4223" },
  ]);
  nc.closed = true;
  assert.equal(watch.connected, false, "a closed connection is not connected");
  nc.end();
});

Deno.test("nats status: an error event goes to onServerError before it is noted and reported", async () => {
  const order: string[] = [];
  const { nc, watch } = watched({
    onServerError: (err) => order.push(`server error ${err.message}`),
    onStatus: (e) => order.push(`status ${e.type} ${e.detail}`),
  });
  const err = new Error("refused");
  nc.push({ type: "error", error: err });
  await settle();
  assert.deepEqual(order, ["server error refused", "status error Error: refused"]);
  assert.equal(watch.health.lastError?.message, "error: Error: refused");
  nc.end();
});

Deno.test("nats status: the close that ends a closing bus is no fault; any other close is", async () => {
  const closing = watched({ closing: () => true });
  closing.nc.push({ type: "close" });
  await settle();
  assert.deepEqual(closing.events, []);
  assert.equal(closing.watch.health.lastError, undefined);
  closing.nc.end();

  const open = watched();
  open.nc.push({ type: "close" });
  open.nc.push({ type: "update", added: ["127.0.0.1:4224"] });
  await settle();
  assert.deepEqual(open.events, [{ type: "close", detail: "" }, { type: "update", detail: "" }]);
  assert.equal(open.watch.health.lastError?.message, "close");
  open.nc.end();
});

Deno.test("nats status: a PONG not back in time stops delivering, reported once; an answer restores it", async () => {
  const nc = new StandIn();
  nc.answers = false;
  const events: Array<{ type: string; detail: string }> = [];
  const watch = new NatsStatusWatch(nc, {
    onStatus: (e) => events.push(e),
    probe: { intervalMs: 10, timeoutMs: 20 },
    closing: () => false,
    onServerError: () => {},
  });
  try {
    await until(() => nc.flushes >= 3);
    const message = "liveness probe: expected a PONG within 20 ms, found none";
    assert.deepEqual(watch.health, {
      connected: true,
      delivering: false,
      lastError: { message, at: watch.health.lastError?.at },
    });
    assert.deepEqual(events, [{ type: "probe", detail: message }]);
    nc.answers = true;
    await until(() => watch.health.delivering);
    assert.equal(events.length, 1);
  } finally {
    watch.stop();
    await settle(40); // a probe still waiting for its PONG times out
    nc.end();
  }
  const flushes = nc.flushes;
  await settle(30);
  assert.equal(nc.flushes, flushes, "no probe after stop()");
});

Deno.test("nats status: no probe with intervalMs 0, none while disconnected", async () => {
  const off = watched();
  await settle(30);
  assert.equal(off.nc.flushes, 0);
  off.nc.end();

  const { nc, watch } = watched({ probe: { intervalMs: 10, timeoutMs: 20 } });
  nc.push({ type: "disconnect", server: "127.0.0.1:4222" });
  await settle(50);
  assert.equal(nc.flushes, 0);
  watch.stop();
  nc.end();
});
