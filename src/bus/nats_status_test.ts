/**
 * NatsStatusWatch on a real nats-server and a real client connection: the
 * server stopped and started again on its port (disconnect, reconnect and
 * the INFO that comes with it), a permission it denies (an error event),
 * the client giving up on a server gone (a close not asked for), and the
 * server paused with SIGSTOP (a PING whose PONG does not come back).
 *
 * The probe's PINGs are counted on the way to the real connection
 * ({@linkcode counted}): "no probe" has no other trace on either side.
 */
import assert from "node:assert/strict";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import {
  type NatsServerProcess,
  startNatsServer,
  type StartNatsServerOptions,
} from "./nats_server.ts";
import {
  type NatsStatusSource,
  NatsStatusWatch,
  type NatsStatusWatchOptions,
} from "./nats_status.ts";

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until `cond` holds, checking every 10 ms for at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`still false after ${ms} ms: ${cond}`);
    await settle(10);
  }
}

/** The real connection, every call passed on; its flushes (the probe's PINGs) counted. */
interface Counted extends NatsStatusSource {
  flushes: number;
}

function counted(nc: NatsConnection): Counted {
  const source: Counted = {
    flushes: 0,
    status: () => nc.status(),
    flush: () => {
      source.flushes++;
      return nc.flush();
    },
    isClosed: () => nc.isClosed(),
  };
  return source;
}

/** A watch on a connection, with what it reported. */
interface Watched {
  source: Counted;
  watch: NatsStatusWatch;
  events: Array<{ type: string; detail: string }>;
}

/** What a test gets: the server, a client of it, and watches on that client. */
interface Scene {
  server: NatsServerProcess;
  nc: NatsConnection;
  /** Every status event type the client dispatched, watched or not (a listener of our own). */
  seen: string[];
  /** A watch on `nc`, without a probe unless `extra` asks for one; stopped after the test. */
  watched: (extra?: Partial<NatsStatusWatchOptions>) => Watched;
}

/**
 * Run `fn` against a fresh server and a client of it; after it, every watch is stopped, the
 * server woken (a test may leave it paused), the client closed and the server stopped.
 */
async function withServer(
  fn: (scene: Scene) => Promise<void>,
  client: Partial<ConnectionOptions> = {},
  serverOpts: StartNatsServerOptions = {},
): Promise<void> {
  const server = await startNatsServer(serverOpts);
  const nc = await connect({ servers: server.url, ...client });
  const seen: string[] = [];
  const listening = (async () => {
    for await (const s of nc.status()) seen.push(s.type);
  })();
  const watches: NatsStatusWatch[] = [];
  const watched = (extra: Partial<NatsStatusWatchOptions> = {}): Watched => {
    const source = counted(nc);
    const events: Watched["events"] = [];
    const watch = new NatsStatusWatch(source, {
      onStatus: (e) => events.push(e),
      probe: { intervalMs: 0 },
      closing: () => false,
      onServerError: () => {},
      ...extra,
    });
    watches.push(watch);
    return { source, watch, events };
  };
  try {
    await fn({ server, nc, seen, watched });
  } finally {
    for (const w of watches) w.stop();
    server.signal("SIGCONT");
    await nc.close();
    await listening;
    await server.stop();
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
}

Deno.test("nats status: a server gone clears connected and is noted; back on its port, the reconnect and its INFO are reported, no error", () =>
  withServer(
    async ({ server, nc, seen, watched }) => {
      const { watch, events } = watched();
      const at = `127.0.0.1:${server.port}`;
      assert.deepEqual(watch.health, { connected: true, delivering: true });
      await until(() => seen.includes("ping")); // the client's own PINGs: not reported

      await server.stop();
      await until(() => !watch.connected);
      const down = watch.health;
      assert.equal(down.connected, false);
      assert.equal(down.delivering, false);
      assert.equal(down.lastError?.message, `disconnect: ${at}`);
      assert.ok(!Number.isNaN(Date.parse(down.lastError?.at ?? "")), down.lastError?.at);

      await until(() => seen.includes("reconnecting")); // tries to dial: not reported
      await server.restart(); // the same port
      await until(() => watch.connected, 10_000);
      // nats.js reports the new server's INFO as an update (nothing added on one server); an
      // update and a reconnect are reported but are no error: the last error is the disconnect
      assert.equal(watch.health.lastError?.message, `disconnect: ${at}`);
      assert.deepEqual(events, [
        { type: "disconnect", detail: at },
        { type: "update", detail: "" },
        { type: "reconnect", detail: at },
      ]);
      assert.deepEqual(watch.health, {
        connected: true,
        delivering: true,
        lastError: { message: `disconnect: ${at}`, at: down.lastError?.at },
      });
      await nc.close();
      assert.equal(watch.connected, false, "a closed connection is not connected");
    },
    { maxReconnectAttempts: -1, reconnectTimeWait: 50, pingInterval: 100 },
  ));

Deno.test("nats status: an error event goes to onServerError before it is noted and reported", async () => {
  // a user that may not publish to `forbidden`: the server answers such a publish with -ERR
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-status-" });
  const configFile = `${dir}/denied.conf`;
  await Deno.writeTextFile(
    configFile,
    'authorization {\n  users = [\n    { user: "lw", password: "lw-test-pw", ' +
      'permissions: { publish: { deny: ["forbidden"] } } }\n  ]\n}\n',
  );
  try {
    await withServer(
      async ({ nc, watched }) => {
        const order: string[] = [];
        const { watch } = watched({
          onServerError: (err) => order.push(`server error ${err.message}`),
          onStatus: (e) => order.push(`status ${e.type} ${e.detail}`),
        });
        nc.publish("forbidden", "x");
        await until(() => order.length >= 2);
        const said = 'Permissions Violation for Publish to "forbidden"';
        assert.deepEqual(order, [
          `server error ${said}`,
          `status error PermissionViolationError: ${said}`,
        ]);
        assert.equal(
          watch.health.lastError?.message,
          `error: PermissionViolationError: ${said}`,
        );
        assert.equal(watch.connected, true, "a refused publish leaves the connection up");
      },
      { user: "lw", pass: "lw-test-pw" },
      { configFile },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nats status: the close that ends a closing bus is no fault; any other close is", async () => {
  await withServer(async ({ nc, watched }) => {
    let asked = 0; // closing() is asked when a close without an error is read
    const { watch, events } = watched({ closing: () => (asked++, true) });
    await nc.close(); // resolves before the listeners have read the close: wait for it
    await until(() => asked === 1);
    assert.deepEqual(events, []);
    assert.equal(watch.health.lastError, undefined);
  });

  // a client that does not reconnect closes by itself once its server is gone
  await withServer(
    async ({ server, nc, watched }) => {
      const { watch, events } = watched();
      const at = `127.0.0.1:${server.port}`;
      await server.stop();
      await nc.closed();
      await until(() => events.length === 2);
      assert.deepEqual(events, [{ type: "disconnect", detail: at }, { type: "close", detail: "" }]);
      assert.equal(watch.health.lastError?.message, "close");
      assert.equal(watch.connected, false);
    },
    { reconnect: false },
  );
});

Deno.test("nats status: a PONG not back in time stops delivering, reported once; an answer restores it", () =>
  withServer(async ({ server, watched }) => {
    server.signal("SIGSTOP"); // paused: it reads nothing, answers nothing, the socket stays open
    const { source, watch, events } = watched({ probe: { intervalMs: 50, timeoutMs: 300 } });
    await until(() => source.flushes >= 3);
    const message = "liveness probe: expected a PONG within 300 ms, found none";
    assert.deepEqual(watch.health, {
      connected: true,
      delivering: false,
      lastError: { message, at: watch.health.lastError?.at },
    });
    assert.deepEqual(events, [{ type: "probe", detail: message }]);
    server.signal("SIGCONT");
    await until(() => watch.health.delivering);
    assert.equal(events.length, 1);
    watch.stop();
    const flushes = source.flushes;
    await settle(250); // five intervals
    assert.equal(source.flushes, flushes, "no probe after stop()");
  }));

Deno.test("nats status: no probe with intervalMs 0, none while disconnected", () =>
  withServer(
    async ({ server, watched }) => {
      // without the probe a paused server goes unnoticed
      const off = watched();
      server.signal("SIGSTOP");
      await settle(250);
      assert.equal(off.source.flushes, 0);
      assert.deepEqual([off.watch.health, off.events], [{ connected: true, delivering: true }, []]);
      server.signal("SIGCONT");

      const { source, watch } = watched({ probe: { intervalMs: 50, timeoutMs: 300 } });
      await until(() => source.flushes >= 2); // probing while connected
      await server.stop();
      await until(() => !watch.connected);
      const flushes = source.flushes;
      await settle(250); // five intervals
      assert.equal(source.flushes, flushes, "no probe while disconnected");
      assert.deepEqual(off.events.map((e) => e.type), ["disconnect"]);
    },
    { maxReconnectAttempts: -1, reconnectTimeWait: 100 },
  ));
