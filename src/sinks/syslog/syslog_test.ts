import assert from "node:assert/strict";
import type { Alert } from "../../core/alert.ts";
import { toSyslog5424 } from "../../core/render/syslog.ts";
import { ALERT, MINIMAL, NASTY } from "../../core/render/test_alert.ts";
import { Logger } from "../../shared/log.ts";
import { waitUntil } from "../../../tests/helpers/stream.ts";
import {
  findRsyslogd,
  hasRsyslogGtls,
  skipMessage,
  startRsyslog,
} from "../../../tests/helpers/rsyslog.ts";
import { makeTestPki, parseFrames, startFrameReceiver } from "../../../tests/helpers/receivers.ts";
import { SyslogSink, SyslogTlsFileError } from "./sink.ts";

const log = new Logger({ quiet: true, write: () => {} });
const ALERTS: Alert[] = [ALERT, MINIMAL, NASTY];
const rsyslogd = await findRsyslogd();
const gtls = await hasRsyslogGtls();
if (!rsyslogd) console.error(skipMessage("rsyslog", "syslog sink tests against rsyslog"));
else if (!gtls) {
  console.error(skipMessage("rsyslog-gnutls", "syslog sink TLS test against rsyslog"));
}

const rendered = (format: "json" | "cef" | "ocsf", alerts = ALERTS) =>
  alerts.map((a) => toSyslog5424(a, { hostname: "lw-test", appName: "latentwatch", format }));

Deno.test({
  name: "SyslogSink → rsyslog over TCP: JSON, CEF and OCSF streams arrive byte for byte",
  ignore: !rsyslogd,
  async fn() {
    const rs = await startRsyslog(rsyslogd!);
    const sinks = (["json", "cef", "ocsf"] as const).map((format) =>
      new SyslogSink({
        name: `syslog:${format}`,
        host: "127.0.0.1",
        port: rs.port,
        format,
        hostname: "lw-test",
        maxQueue: 100,
        timeoutMs: 5000,
      }, { log })
    );
    try {
      for (const s of sinks) await s.start();
      for (const s of sinks) {
        for (const a of ALERTS) assert.equal(s.submit(a), true);
        assert.equal(await s.drain(5000), 0);
      }
      const lines = await rs.waitFor(9);
      const json = rendered("json");
      const cef = rendered("cef");
      const ocsf = rendered("ocsf");
      // each stream in its own order; rsyslog may write one connection's lines before those of
      // a connection that sent earlier (drained means written to the socket, not yet read)
      assert.deepEqual([...lines].sort(), [...json, ...cef, ...ocsf].sort());
      for (const stream of [json, cef, ocsf]) {
        assert.deepEqual(lines.filter((l) => stream.includes(l)), stream);
      }
      assert.ok(cef.every((m) => /[ \uFEFF]CEF:0\|/.test(m)), "CEF carried in MSG");
      for (const s of sinks) {
        assert.deepEqual(s.stats, { queued: 0, delivered: 3, dropped: {}, retries: 0 });
      }
    } finally {
      for (const s of sinks) await s.close();
      await rs.stop();
    }
  },
});

Deno.test({
  name: "SyslogSink → rsyslog over TLS (gtls) with a CA file: frames arrive intact",
  ignore: !rsyslogd || !gtls,
  async fn() {
    const pki = await makeTestPki();
    const rs = await startRsyslog(rsyslogd!, { tls: pki });
    const sink = new SyslogSink({
      host: "127.0.0.1",
      port: rs.port,
      tls: { caFile: pki.ca, serverName: "localhost" },
      format: "cef",
      hostname: "lw-test",
      maxQueue: 100,
      timeoutMs: 5000,
    }, { log });
    try {
      await sink.start();
      for (const a of ALERTS) sink.submit(a);
      assert.equal(await sink.drain(5000), 0);
      assert.deepEqual(await rs.waitFor(3), rendered("cef"));
    } finally {
      await sink.close();
      await rs.stop();
      await Deno.remove(pki.dir, { recursive: true });
    }
  },
});

Deno.test("SyslogSink → Deno TLS receiver: octet-counted frames, CA file checked", async () => {
  const pki = await makeTestPki();
  const rx = startFrameReceiver({
    cert: await Deno.readTextFile(pki.cert),
    key: await Deno.readTextFile(pki.key),
  });
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port: rx.port,
    tls: { caFile: pki.ca },
    format: "json",
    hostname: "lw-test",
    maxQueue: 100,
    timeoutMs: 5000,
  }, { log });
  try {
    await sink.start();
    for (const a of ALERTS) sink.submit(a);
    assert.equal(await sink.drain(5000), 0);
    await waitUntil(() => rx.messages.length >= 3, "3 frames over TLS", 5000);
    assert.deepEqual(rx.messages, rendered("json"));
  } finally {
    await sink.close();
    await rx.close();
    await Deno.remove(pki.dir, { recursive: true });
  }
});

Deno.test("SyslogSink: a certificate from another CA is refused, retried, then shut down", async () => {
  const pki = await makeTestPki();
  const other = await makeTestPki();
  const rx = startFrameReceiver({
    cert: await Deno.readTextFile(pki.cert),
    key: await Deno.readTextFile(pki.key),
  });
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port: rx.port,
    tls: { caFile: other.ca },
    maxQueue: 10,
    timeoutMs: 2000,
    initialBackoffMs: 10,
    maxBackoffMs: 20,
  }, { log });
  try {
    await sink.start();
    sink.submit(ALERT);
    await waitUntil(() => sink.stats.retries >= 2, "failed handshakes retried", 5000);
    assert.equal(await sink.drain(10), 1);
    assert.deepEqual(sink.stats.dropped, { shutdown: 1 });
    assert.deepEqual(rx.messages, []);
  } finally {
    await sink.close();
    await rx.close();
    await Deno.remove(pki.dir, { recursive: true });
    await Deno.remove(other.dir, { recursive: true });
  }
});

Deno.test("SyslogSink: a missing CA file is a named error at start", async () => {
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port: 1,
    tls: { caFile: "/nonexistent/ca.pem" },
    maxQueue: 10,
    timeoutMs: 1000,
  }, { log });
  await assert.rejects(() => sink.start(), (err: Error) => {
    assert.ok(err instanceof SyslogTlsFileError);
    assert.match(err.message, /^expected a readable PEM CA file at \/nonexistent\/ca\.pem, found /);
    return true;
  });
  await sink.close();
});

Deno.test("SyslogSink: reconnects when the collector drops the connection", async () => {
  const rx = startFrameReceiver();
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port: rx.port,
    hostname: "lw-test",
    maxQueue: 100,
    timeoutMs: 2000,
    initialBackoffMs: 10,
  }, { log });
  try {
    await sink.start();
    sink.submit(ALERT);
    await waitUntil(() => rx.messages.length === 1, "first frame");
    rx.dropConnections();
    // the sink sees EOF on its connection and opens a new one for the next alert
    await new Promise((r) => setTimeout(r, 50));
    sink.submit(MINIMAL);
    sink.submit(NASTY);
    await waitUntil(() => rx.messages.length === 3, "frames on the new connection", 5000);
    assert.equal(rx.connections, 2);
    assert.deepEqual(rx.messages, rendered("json"));
    assert.equal(await sink.drain(1000), 0);
  } finally {
    await sink.close();
    await rx.close();
  }
});

Deno.test("SyslogSink: a collector that is down at start is retried until it answers", async () => {
  // reserve a port, free it, and bring the collector up there later
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port,
    hostname: "lw-test",
    maxQueue: 100,
    timeoutMs: 1000,
    initialBackoffMs: 20,
    maxBackoffMs: 50,
  }, { log });
  await sink.start(); // logs, does not throw
  for (const a of ALERTS) sink.submit(a);
  await waitUntil(() => sink.stats.retries >= 2, "connect retries", 5000);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const conn = await listener.accept();
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  try {
    await waitUntil(
      async () => {
        const n = await conn.read(buf);
        if (n) chunks.push(buf.slice(0, n));
        const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
        let off = 0;
        for (const c of chunks) {
          all.set(c, off);
          off += c.length;
        }
        return parseFrames(all).messages.length === 3;
      },
      "3 frames after the collector came up",
      5000,
    );
    assert.equal(await sink.drain(2000), 0);
    assert.equal(sink.stats.delivered, 3);
  } finally {
    await sink.close();
    conn.close();
    listener.close();
  }
});

Deno.test("SyslogSink: a message over max_message_bytes is dropped as too_large, others go", async () => {
  const rx = startFrameReceiver();
  const sink = new SyslogSink({
    host: "127.0.0.1",
    port: rx.port,
    hostname: "lw-test",
    maxQueue: 100,
    timeoutMs: 2000,
    maxMessageBytes: 600,
  }, { log });
  try {
    await sink.start();
    const big = { ...ALERT, id: "big", description: "x".repeat(2000) };
    assert.equal(sink.submit(big), false);
    assert.equal(sink.submit(MINIMAL), true);
    assert.equal(await sink.drain(2000), 0);
    assert.deepEqual(sink.stats.dropped, { too_large: 1 });
    await waitUntil(() => rx.messages.length === 1, "the small one");
    assert.deepEqual(rx.messages, rendered("json", [MINIMAL]));
  } finally {
    await sink.close();
    await rx.close();
  }
});
