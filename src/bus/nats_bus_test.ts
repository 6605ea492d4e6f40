/**
 * NatsBus against a real nats-server: concurrent stream set-up, and the raw
 * header block the intake reads from the client's private message fields
 * (so a client upgrade that moves them fails here, loudly).
 */
import assert from "node:assert/strict";
import { connect, headers as natsHeaders, type Msg } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNatsBus, type NatsBus } from "./nats_bus.ts";
import { rawHeaderBlock } from "./nats_message.ts";
import { HeaderEncodeError } from "./nats_headers.ts";
import { HeaderTemplate } from "./header_template.ts";
import { classifyBusError } from "./errors.ts";
import type { BusMessage } from "./bus.ts";
import { NatsServerStartError, startNatsServer } from "./nats_server.ts";

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

Deno.test("nats bus: rawHeaderBlock reads a real message's header block from the client (private fields)", () =>
  withServer(async (url) => {
    const nc = await connect({ servers: url });
    try {
      const got: Msg[] = [];
      const sub = nc.subscribe("raw.>", { callback: (_err, msg) => void got.push(msg) });
      const h = natsHeaders();
      h.set("Lw-Request-Id", "r1");
      h.append("Lw-Seq", "7");
      nc.publish("raw.with", new Uint8Array([1, 2, 3]), { headers: h });
      nc.publish("raw.without", new Uint8Array([4]));
      await nc.flush();
      for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      sub.unsubscribe();
      const withHeaders = got.find((m) => m.subject === "raw.with")!;
      const without = got.find((m) => m.subject === "raw.without")!;
      const block = rawHeaderBlock(withHeaders);
      assert.ok(
        block instanceof Uint8Array,
        "the client's raw fields (_rdata, _msg.hdr) are where rawHeaderBlock reads them: " +
          "a client upgrade moved them; update rawHeaderBlock",
      );
      const text = new TextDecoder().decode(block);
      assert.match(text, /^NATS\/1\.0\r\n/);
      assert.match(text, /Lw-Request-Id: r1\r\n/);
      assert.match(text, /Lw-Seq: 7\r\n/);
      assert.ok(text.endsWith("\r\n\r\n"), JSON.stringify(text));
      assert.deepEqual([...withHeaders.data], [1, 2, 3], "the payload follows the block");
      assert.equal(rawHeaderBlock(without), null, "no headers: null");
    } finally {
      await nc.close();
    }
  }));

Deno.test("nats bus: published headers arrive as the client's own header object would write them", () =>
  withServer(async (url) => {
    const bus = await connectNatsBus({ url, name: "headers-out" });
    const nc = await connect({ servers: url });
    try {
      const got: Msg[] = [];
      const sub = nc.subscribe("hdr.>", { callback: (_err, msg) => void got.push(msg) });
      await nc.flush();
      const sent = {
        "Lw-Request-Id": "req 1",
        "Lw-Seq": " 7 ",
        "Lw-Meta-note": "naïve ✓",
        "x": "",
      };
      // a header template's record goes out as the block the template wrote for it
      const templated = new HeaderTemplate({ headers: sent, varying: ["Lw-Seq"] }).render(["1234"]);
      bus.publish("hdr.a", new Uint8Array([9]), sent);
      bus.publish("hdr.tpl", new Uint8Array([9]), templated);
      bus.publish("hdr.none", new Uint8Array([8]), {});
      // the reference: the NATS client's own header object, published by the client
      const reference = (record: Record<string, string>) => {
        const h = natsHeaders();
        for (const [k, v] of Object.entries(record)) h.set(k, v);
        return h;
      };
      nc.publish("hdr.ref", new Uint8Array([9]), { headers: reference(sent) });
      nc.publish("hdr.tplref", new Uint8Array([9]), { headers: reference(templated) });
      await bus.flush();
      await nc.flush();
      for (let i = 0; i < 100 && got.length < 5; i++) await new Promise((r) => setTimeout(r, 10));
      sub.unsubscribe();
      const bySubject = (s: string) => got.find((m) => m.subject === s)!;
      const block = (s: string) => new TextDecoder().decode(rawHeaderBlock(bySubject(s))!);
      assert.equal(block("hdr.a"), block("hdr.ref"));
      assert.equal(block("hdr.tpl"), block("hdr.tplref"));
      assert.match(block("hdr.tpl"), /Lw-Seq: 1234\r\n/);
      assert.equal(bySubject("hdr.a").headers?.get("Lw-Seq"), "7", "the client reads them back");
      assert.deepEqual([...bySubject("hdr.a").data], [9]);
      assert.equal(rawHeaderBlock(bySubject("hdr.none")), null, "no names: no header block");
      // a header that would inject a line is refused before anything is sent
      assert.throws(
        () => bus.publish("hdr.bad", new Uint8Array(0), { "Lw-Seq": "1\r\nLw-Evil: 1" }),
        HeaderEncodeError,
      );
      assert.throws(
        () => bus.publish("hdr.bad", new Uint8Array(0), { "Bad Name": "1" }),
        HeaderEncodeError,
      );
    } finally {
      await nc.close();
      await bus.close();
    }
  }));

Deno.test("startNatsServer: a server that exits at start is a NatsServerStartError with its exit code and stderr", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-nats-bad-" });
  try {
    await Deno.writeTextFile(`${dir}/bad.conf`, "this is { not a nats config\n");
    await assert.rejects(
      startNatsServer({ configFile: `${dir}/bad.conf`, storeDir: `${dir}/store` }),
      (err: unknown) => {
        assert.ok(err instanceof NatsServerStartError, String(err));
        assert.equal(err.name, "NatsServerStartError");
        assert.ok(err.exitCode !== null && err.exitCode !== 0, `exit code ${err.exitCode}`);
        assert.match(err.message, /exited with code/);
        assert.ok(err.stderr.length > 0, "with what it said");
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A server whose one user `asker` has `permissions`; `fn` gets a bus connected as that user. */
async function withAsker(permissions: string, fn: (bus: NatsBus) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-nats-perm-" });
  await Deno.writeTextFile(
    `${dir}/perm.conf`,
    `authorization { users = [ { user: asker, password: pw, permissions: ${permissions} } ] }\n`,
  );
  const server = await startNatsServer({
    configFile: `${dir}/perm.conf`,
    storeDir: `${dir}/store`,
  });
  const bus = await connectNatsBus({
    url: server.url.replace("nats://", "nats://asker:pw@"),
    name: "asker",
    reconnectWaitMs: 50,
  });
  try {
    await fn(bus);
  } finally {
    await bus.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("nats bus: a request whose reply subscription the server refuses fails at once as permission_denied", () =>
  withAsker('{ publish: ">", subscribe: { allow: ">", deny: "_INBOX.>" } }', async (bus) => {
    const answered = bus.subscribe("svc.echo", (m) => {
      if (m.reply) bus.publish(m.reply, new Uint8Array([1]));
    });
    await bus.flush();
    const t0 = performance.now();
    const err = await bus.request("svc.echo", new Uint8Array(0), undefined, 10_000).then(
      () => assert.fail("expected the request to fail"),
      (e) => e,
    );
    assert.equal(classifyBusError(err), "permission_denied", String(err));
    assert.ok(performance.now() - t0 < 5_000, "failed at once, not at its timeout");
    answered.unsubscribe();
  }));

Deno.test("nats bus: a request on a subject the server refuses to publish fails at once as permission_denied", () =>
  withAsker('{ publish: { allow: ">", deny: "svc.secret" }, subscribe: ">" }', async (bus) => {
    const answer = (m: BusMessage) => {
      if (m.reply) bus.publish(m.reply, new Uint8Array([1]));
    };
    const open = bus.subscribe("svc.open", answer);
    const secret = bus.subscribe("svc.secret", answer);
    await bus.flush();
    const t0 = performance.now();
    const pending = bus.request("svc.open", new Uint8Array(0), undefined, 10_000);
    const err = await bus.request("svc.secret", new Uint8Array(0), undefined, 10_000).then(
      () => assert.fail("expected the request to fail"),
      (e) => e,
    );
    assert.equal(classifyBusError(err), "permission_denied", String(err));
    assert.ok(performance.now() - t0 < 5_000, "failed at once, not at its timeout");
    // the other subject's request is answered as usual
    assert.deepEqual([...(await pending).data], [1]);
    open.unsubscribe();
    secret.unsubscribe();
  }));
