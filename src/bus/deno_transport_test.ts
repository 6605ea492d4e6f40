/**
 * The Deno transport against a real nats-server, with nats.js's own Node transport on the
 * other end as the independent reference: what one sends the other must read byte for byte.
 */
import { deepStrictEqual as assertEquals, default as assert, rejects } from "node:assert/strict";
import { errors, headers, type NatsConnection, type Server } from "@nats-io/transport-node";
import { DenoTransport, MAX_QUEUED_WRITE_BYTES, NatsWriteBacklogError } from "./deno_transport.ts";
import { connectNats, natsTransportFromEnv } from "./nats_connect.ts";
import {
  findNatsServer,
  freePort,
  type NatsServerProcess,
  startNatsServer,
} from "./nats_server.ts";
import { makeTestPki } from "../../tests/helpers/receivers.ts";

const ignore = (await findNatsServer()) === null;

/** Sizes that land inside, across and beyond the transport's read chunks (256 KiB). */
const SIZES = [0, 1, 17, 4095, 4097, 49_400, 65_537, 300_000, 900_000];

/** Deterministic bytes for message `i` of `size`: a wrong offset or a stale chunk shows. */
function pattern(i: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let j = 0; j < size; j++) out[j] = (i * 131 + j * 7 + (j >> 8)) & 255;
  return out;
}

/** Publish a burst from `from` and check every message `to` reads, in order. */
async function burst(from: NatsConnection, to: NatsConnection, count: number): Promise<void> {
  const got: { data: Uint8Array; seq: string | undefined }[] = [];
  const all = Promise.withResolvers<void>();
  to.subscribe("burst", {
    callback: (_err, m) => {
      // kept as read, not copied: later reads must never land in memory a message still holds
      got.push({ data: m.data, seq: m.headers?.get("seq") });
      if (got.length === count) all.resolve();
    },
  });
  const timer = setTimeout(() => all.reject(new Error(`only ${got.length} of ${count}`)), 20_000);
  await to.flush();
  for (let i = 0; i < count; i++) {
    const h = headers();
    h.set("seq", String(i));
    from.publish("burst", pattern(i, SIZES[i % SIZES.length]), i % 3 === 0 ? { headers: h } : {});
  }
  await Promise.race([from.flush(), all.promise]);
  await all.promise.finally(() => clearTimeout(timer));
  got.forEach((m, i) => {
    const want = pattern(i, SIZES[i % SIZES.length]);
    assertEquals(m.data.length, want.length, `message ${i}: length`);
    assert(m.data.every((b, j) => b === want[j]), `message ${i}: bytes differ`);
    assertEquals(m.seq, i % 3 === 0 ? String(i) : undefined, `message ${i}: header`);
  });
}

for (const [writer, reader] of [["node", "deno"], ["deno", "node"]] as const) {
  Deno.test({
    name: `deno transport: a burst of mixed sizes from the ${writer} transport to the ${reader} ` +
      "transport arrives intact, in order",
    ignore,
    async fn() {
      const server = await startNatsServer();
      const from = await connectNats({ servers: server.url }, writer);
      const to = await connectNats({ servers: server.url }, reader);
      try {
        await burst(from, to, 180);
      } finally {
        await from.close();
        await to.close();
        await server.stop();
      }
    },
  });
}

Deno.test({
  name: "deno transport: request and reply both ways, with headers",
  ignore,
  async fn() {
    const server = await startNatsServer();
    const a = await connectNats({ servers: server.url }, "deno");
    const b = await connectNats({ servers: server.url }, "deno");
    try {
      b.subscribe("echo", {
        callback: (_e, m) => {
          const h = headers();
          h.set("len", String(m.data.length));
          m.respond(m.data.slice().reverse(), { headers: h });
        },
      });
      await b.flush();
      for (let i = 0; i < 50; i++) {
        const sent = pattern(i, SIZES[i % SIZES.length]);
        const reply = await a.request("echo", sent, { timeout: 5000 });
        assertEquals(reply.headers?.get("len"), String(sent.length));
        assertEquals(reply.data, sent.slice().reverse());
      }
    } finally {
      await a.close();
      await b.close();
      await server.stop();
    }
  },
});

/**
 * A scripted connection (a test double: no real socket lets a test choose the turn a write
 * completes in). It answers the first read with an INFO line and hands each write to the test.
 */
class ScriptedConn {
  writes: { bytes: Uint8Array; done: (n: number) => void }[] = [];
  #info: Uint8Array | null = new TextEncoder().encode('INFO {"max_payload":1048576}\r\n');
  #closed = Promise.withResolvers<null>();
  read(into: Uint8Array): Promise<number | null> {
    if (!this.#info) return this.#closed.promise;
    into.set(this.#info);
    const n = this.#info.length;
    this.#info = null;
    return Promise.resolve(n);
  }
  write(bytes: Uint8Array): Promise<number> {
    return new Promise((done) => this.writes.push({ bytes: bytes.slice(), done }));
  }
  setNoDelay(): void {}
  close(): void {
    this.#closed.resolve(null);
  }
}

Deno.test("deno transport: a frame queued in any turn after a write completes is written", async () => {
  // the drain must be marked done in the same turn it finds the queue empty: a frame queued a
  // few microtasks after a write completed once sat unwritten until the next frame came
  for (let delay = 0; delay <= 8; delay++) {
    const conn = new ScriptedConn();
    const transport = new DenoTransport({
      dial: () => Promise.resolve(conn as unknown as Deno.TcpConn),
    });
    const target = { hostname: "127.0.0.1", port: 1, tlsName: "" } as unknown as Server;
    await transport.connect(target, { servers: "127.0.0.1:1" });
    transport.send(new Uint8Array([1]));
    assertEquals(conn.writes.length, 1);
    conn.writes[0].done(1);
    for (let i = 0; i < delay; i++) await Promise.resolve();
    transport.send(new Uint8Array([2]));
    await new Promise((r) => setTimeout(r, 0));
    assertEquals(
      conn.writes.map((w) => [...w.bytes]),
      [[1], [2]],
      `queued ${delay} microtasks later`,
    );
    transport.discard();
  }
});

Deno.test({
  name: "deno transport: a refused dial is nats.js's ConnectionError",
  ignore,
  async fn() {
    const port = freePort();
    await rejects(
      () => connectNats({ servers: `127.0.0.1:${port}`, reconnect: false }, "deno"),
      (err) => err instanceof errors.ConnectionError && /refused/.test(err.message),
    );
  },
});

/** Resolve with the first status event `nc` reports of type `type`. */
async function nextStatus(nc: NatsConnection, type: string): Promise<unknown> {
  for await (const s of nc.status()) if (s.type === type) return s;
  throw new Error(`connection closed before a ${type} status`);
}

Deno.test({
  name: "deno transport: reconnects after the server restarts and keeps its subscription",
  ignore,
  async fn() {
    const server = await startNatsServer();
    const nc = await connectNats(
      { servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 },
      "deno",
    );
    try {
      const got: string[] = [];
      nc.subscribe("after", {
        callback: (_e, m) => {
          got.push(m.string());
        },
      });
      await nc.flush();
      const reconnected = nextStatus(nc, "reconnect");
      await server.restart();
      await reconnected;
      nc.publish("after", "back");
      await nc.flush();
      assertEquals(got, ["back"]);
    } finally {
      await nc.close();
      await server.stop();
    }
  },
});

/** A transport on a real nats-server that is then paused (SIGSTOP), and a 1 MB PUB frame. */
async function pausedServer(): Promise<
  { server: NatsServerProcess; transport: DenoTransport; pub: Uint8Array }
> {
  const server = await startNatsServer();
  const transport = new DenoTransport();
  const target = { hostname: "127.0.0.1", port: server.port, tlsName: "" } as unknown as Server;
  await transport.connect(target, { servers: server.url });
  // valid protocol, so whatever the server reads before it stops is no reason to drop us
  const te = new TextEncoder();
  transport.send(te.encode('CONNECT {"verbose":false,"pedantic":false}\r\n'));
  const body = 1_000_000;
  const head = te.encode(`PUB nobody ${body}\r\n`);
  const pub = new Uint8Array(head.length + body + 2);
  pub.set(head);
  pub.set(te.encode("\r\n"), head.length + body);
  server.signal("SIGSTOP");
  await new Promise((r) => setTimeout(r, 50));
  return { server, transport, pub };
}

Deno.test({
  name: "deno transport: a server that stops reading ends the connection past the write limit",
  ignore,
  async fn() {
    const { server, transport, pub } = await pausedServer();
    try {
      // the kernel's socket buffers take a few MiB; the rest queues in the transport
      for (let i = 0; i < MAX_QUEUED_WRITE_BYTES / pub.length + 16; i++) {
        transport.send(pub);
        await new Promise((r) => setTimeout(r, 0));
      }
      const err = await transport.closed();
      assert(err instanceof NatsWriteBacklogError, `found ${err}`);
      assert(err.queued > MAX_QUEUED_WRITE_BYTES);
      assert(transport.isClosed);
    } finally {
      server.signal("SIGCONT");
      transport.discard();
      await server.stop();
    }
  },
});

Deno.test({
  name: "deno transport: a close that flushes to a server that stopped reading still closes",
  ignore,
  async fn() {
    const { server, transport, pub } = await pausedServer();
    try {
      // more than the kernel's buffers take: a write stays pending
      for (let i = 0; i < 24; i++) transport.send(pub);
      await new Promise((r) => setTimeout(r, 100));
      const started = performance.now();
      transport.disconnect();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stuck = new Promise((r) => timer = setTimeout(() => r("stuck"), 6000));
      const ended = await Promise.race([transport.closed().then(() => "closed"), stuck]);
      clearTimeout(timer);
      assertEquals(ended, "closed");
      assert(performance.now() - started >= 1500, "it waited for the flush first");
      assert(transport.isClosed);
    } finally {
      server.signal("SIGCONT");
      transport.discard();
      await server.stop();
    }
  },
});

Deno.test({
  name: "deno transport: TLS goes through nats.js's Node transport, certificates checked",
  ignore,
  async fn() {
    const pki = await makeTestPki();
    const conf = `${pki.dir}/tls.conf`;
    await Deno.writeTextFile(
      conf,
      `tls {\n  cert_file: "${pki.cert}"\n  key_file: "${pki.key}"\n}\n`,
    );
    const server = await startNatsServer({ configFile: conf });
    try {
      // asked for: handed over before dialing, verified against the test CA
      const nc = await connectNats({ servers: server.url, tls: { caFile: pki.ca } }, "deno");
      const sub = nc.subscribe("tls", { max: 1 });
      nc.publish("tls", pattern(3, 49_400));
      for await (const m of sub) assertEquals(Uint8Array.from(m.data), pattern(3, 49_400));
      // a TLS connection that drops is noticed and comes back
      const opts = { maxReconnectAttempts: -1, reconnectTimeWait: 100 };
      const again = await connectNats(
        { servers: server.url, tls: { caFile: pki.ca }, ...opts },
        "deno",
      );
      const back = nextStatus(again, "reconnect");
      await server.restart();
      await back;
      const after = again.subscribe("tls.after", { max: 1 });
      again.publish("tls.after", "back");
      for await (const m of after) assertEquals(m.string(), "back");
      await again.close();
      await nc.close();
      // not asked for, but the server requires it: handed over after INFO, and the
      // self-signed CA is refused (a plain-text client would have failed on the protocol)
      await rejects(
        () => connectNats({ servers: server.url, reconnect: false }, "deno"),
        (err) => err instanceof Error && /certificate|self.signed/i.test(err.message),
      );
    } finally {
      await server.stop();
      await Deno.remove(pki.dir, { recursive: true });
    }
  },
});

Deno.test("natsTransportFromEnv: deno by default, node on request, anything else refused", () => {
  const before = Deno.env.get("LATENTWATCH_NATS_TRANSPORT");
  try {
    Deno.env.delete("LATENTWATCH_NATS_TRANSPORT");
    assertEquals(natsTransportFromEnv(), "deno");
    Deno.env.set("LATENTWATCH_NATS_TRANSPORT", "node");
    assertEquals(natsTransportFromEnv(), "node");
    Deno.env.set("LATENTWATCH_NATS_TRANSPORT", "uring");
    assert.throws(
      () => natsTransportFromEnv(),
      (e) => e instanceof TypeError && /"uring"/.test(e.message),
    );
  } finally {
    if (before === undefined) Deno.env.delete("LATENTWATCH_NATS_TRANSPORT");
    else Deno.env.set("LATENTWATCH_NATS_TRANSPORT", before);
  }
});
