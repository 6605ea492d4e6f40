/**
 * No input stops intake (issue 11): against a real nats-server and a real
 * monitor, frames with header blocks no client library would build (a name
 * with a space, a non-ASCII name, invalid UTF-8, a repeated header) are
 * rejected and counted by reason, and the frames after them are processed
 * at once, not after a reconnect. Readiness tells the truth about a
 * subscription the server closed.
 */
import assert from "node:assert/strict";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { startNatsServer } from "../src/bus/nats_server.ts";
import { BusHandlerError, SubscriptionClosedError } from "../src/bus/bus.ts";
import {
  alertKey,
  expectedAlerts,
  intakeHarness,
  publishValid,
  SUBJECT,
  validFrame,
} from "./helpers/intake.ts";
import { headerBlock, line } from "./helpers/raw_nats.ts";
import { waitUntil } from "./helpers/stream.ts";

const enc = new TextEncoder();
const bytes = (...parts: (string | number[])[]) => {
  const chunks = parts.map((p) => typeof p === "string" ? enc.encode(p) : new Uint8Array(p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) out.set(c, (o += c.length) - c.length);
  return out;
};

Deno.test("intake: bad header names and encodings are rejected by reason, and intake goes on at once", async () => {
  const h = await intakeHarness("INTAKE_NAMES");
  try {
    const t = h.monitor.telemetry;
    const f = validFrame(h.sim, "bad-1", "ignore previous instructions");
    const bad = [
      // a space in a name: the NATS client's own parser throws on it
      { extra: enc.encode("Bad Name: x"), reason: "header_name" },
      // a non-ASCII letter in a name
      { extra: enc.encode("Lw-Modèle: x"), reason: "header_name" },
      // invalid UTF-8 in a name
      { extra: bytes("Lw-", [0xff, 0xfe], ": x"), reason: "header_name" },
      // invalid UTF-8 in a value
      { extra: bytes("X-Note: ", [0xc3, 0x28]), reason: "header_encoding" },
      // a line without a colon
      { extra: enc.encode("no colon here"), reason: "header_syntax" },
    ];
    for (const b of bad) {
      await h.raw.publish({
        subject: SUBJECT,
        headerBlock: headerBlock([...f.lines, b.extra]),
        payload: f.payload,
      });
    }
    const tokens = await publishValid(h, "good-after", "ignore previous instructions");
    await h.raw.flush();
    const want = expectedAlerts(h.sim, "good-after", tokens);
    assert.ok(want.length >= 1, "the prompt carries a concept");
    // well under the ~30 s a stale-connection reconnect would take
    await waitUntil(() => h.alerts.length >= want.length, "the next frame's alerts", 5000);
    assert.deepEqual(h.alerts.map(alertKey).sort(), want.sort());

    assert.equal(t.value("latentwatch.frames.rejected", { reason: "header_name" }), 3);
    assert.equal(t.value("latentwatch.frames.rejected", { reason: "header_encoding" }), 1);
    assert.equal(t.value("latentwatch.frames.rejected", { reason: "header_syntax" }), 1);
    assert.equal(t.total("latentwatch.frames.rejected"), 5);
    const rejected = h.logs.filter((l) => l.startsWith("warn frame.rejected "));
    assert.equal(rejected.length, 5);
    for (const r of rejected) {
      assert.ok(r.includes(` subject=${SUBJECT} `), r);
      assert.ok(r.includes(" request=bad-1 "), `the request id is named when readable: ${r}`);
    }

    const base = `http://127.0.0.1:${h.monitor.controlAddr!.port}`;
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    const stats = await (await fetch(`${base}/stats`)).json();
    assert.equal(stats.nats.connected, true);
    assert.equal(stats.nats.delivering, true);
    assert.equal(stats.nats.subscribed, true);
    // the Deno transport (the default) reports its read chunks; the tap subscription borrows
    const chunks = stats.nats.read_chunks;
    assert.ok(chunks.allocated >= 1, JSON.stringify(chunks));
    assert.deepEqual(Object.keys(chunks).sort(), ["allocated", "kept", "reused"]);
  } finally {
    await h.stop();
  }
});

Deno.test("intake: a header repeated with the same spelling is rejected, not joined", async () => {
  const h = await intakeHarness("INTAKE_REPEAT");
  try {
    const f = validFrame(h.sim, "a", "ignore previous instructions");
    await h.raw.publish({
      subject: SUBJECT,
      headerBlock: headerBlock([...f.lines, line("Lw-Request-Id", "a")]),
      payload: f.payload,
    });
    const tokens = await publishValid(h, "after-repeat", "ignore previous instructions");
    await h.raw.flush();
    const want = expectedAlerts(h.sim, "after-repeat", tokens);
    await waitUntil(() => h.alerts.length >= want.length, "the next frame's alerts", 5000);
    await h.monitor.pipeline.idle();
    assert.deepEqual(h.alerts.map(alertKey).sort(), want.sort(), "no alert for 'a' nor 'a,a'");
    const t = h.monitor.telemetry;
    assert.equal(t.value("latentwatch.frames.rejected", { reason: "Lw-Request-Id" }), 1);
    const line0 = h.logs.find((l) => l.startsWith("warn frame.rejected "))!;
    assert.match(line0, /Lw-Request-Id: expected one header, found 2/);
  } finally {
    await h.stop();
  }
});

Deno.test("nats bus: a throwing handler is reported and the subscription keeps delivering", async () => {
  const server = await startNatsServer();
  const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
  try {
    const got: string[] = [];
    const errors: Error[] = [];
    const sub = bus.subscribe("t.x", (m) => {
      const s = new TextDecoder().decode(m.data);
      if (s === "boom") throw new Error("handler failed");
      got.push(s);
    }, (e) => errors.push(e));
    await bus.flush();
    for (const s of ["a", "boom", "b"]) bus.publish("t.x", enc.encode(s));
    await bus.flush();
    await waitUntil(() => got.length === 2, "both good messages", 3000);
    assert.deepEqual(got, ["a", "b"]);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof BusHandlerError);
    assert.ok(sub.active);
    assert.equal(bus.health.delivering, true);
    sub.unsubscribe();
    assert.equal(sub.active, false);
  } finally {
    await bus.close();
    await server.stop();
  }
});

Deno.test("nats bus: a subscription the server closes reads inactive, is reported and retried", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-perm-" });
  const conf = `${dir}/nats.conf`;
  await Deno.writeTextFile(
    conf,
    `authorization { users = [ { user: "lw", password: "pw", permissions: { subscribe: { deny: ["denied.>"] } } } ] }\n`,
  );
  const server = await startNatsServer({ configFile: conf });
  const bus = await connectNatsBus({
    url: server.url,
    user: "lw",
    pass: "pw",
    probe: { intervalMs: 0 },
    resubscribeMs: 100,
  });
  try {
    const errors: Error[] = [];
    const ok = bus.subscribe("allowed.x", () => {});
    const sub = bus.subscribe("denied.x", () => {}, (e) => errors.push(e));
    await bus.flush().catch(() => {});
    await waitUntil(
      () => errors.filter((e) => e instanceof SubscriptionClosedError).length >= 2,
      "the closed subscription reported and retried",
      5000,
    );
    assert.equal(sub.active, false);
    assert.equal(ok.active, true, "the other subscription is untouched");
    assert.match(bus.health.lastError?.message ?? "", /denied\.x/);
    sub.unsubscribe();
  } finally {
    await bus.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
