/**
 * deploy/ works as written: nats-server runs with deploy/nats/accounts.conf
 * and enforces it (the sidecar creates the stream and publishes alerts and
 * nothing else; SOC tools read and never write; only the sidecar steers and
 * answers gated frames, taps publish frames and acks), and the NATS and
 * rsyslog files parse. The Vector config and the renderings it forwards:
 * tests/deploy_render_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, type ConsumerConfig, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { findNatsServer, startNatsServer } from "../src/bus/nats_server.ts";
import { connectNatsBus, NatsBus } from "../src/bus/nats_bus.ts";
import { sampleAlert } from "./helpers/live_alerts.ts";
import { runLatentwatch } from "./helpers/cli.ts";
import { PASSWORDS, violations } from "./helpers/nats_accounts.ts";
import { natsConfigPasswordProblem } from "../src/bus/nats_config_password.ts";

const DEPLOY = fileURLToPath(new URL("../deploy/", import.meta.url));
const STREAM = "LATENTWATCH_ALERTS";

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const enc = (text: string) => new TextEncoder().encode(text);
const dec = (data: Uint8Array) => new TextDecoder().decode(data);

/** One logged-in user: the project's NatsBus over it, and the violations its connection saw. */
interface Login {
  nc: NatsConnection;
  bus: NatsBus;
  errors: string[];
  /** Resolves once the server has refused a publish to `subject` on this connection. */
  refused(subject: string): Promise<void>;
}

const USER_PASSWORDS: Record<string, string> = {
  latentwatch: PASSWORDS.LATENTWATCH_NATS_PASSWORD,
  tap: PASSWORDS.LATENTWATCH_TAP_PASSWORD,
  soc: PASSWORDS.LATENTWATCH_SOC_PASSWORD,
};

/**
 * Start nats-server with accounts.conf, hand `body` a login function, and
 * stop everything afterwards; the whole test fails after 20 s at most.
 */
async function withAccounts(
  body: (login: (user: "latentwatch" | "tap" | "soc") => Promise<Login>) => Promise<void>,
): Promise<void> {
  for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
  const srv = await startNatsServer({ configFile: `${DEPLOY}nats/accounts.conf` });
  const open: NatsConnection[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const login = async (user: "latentwatch" | "tap" | "soc"): Promise<Login> => {
      const nc = await connect({ servers: srv.url, user, pass: USER_PASSWORDS[user] });
      open.push(nc);
      const errors = violations(nc);
      return {
        nc,
        bus: new NatsBus(nc, { url: srv.url, ackTimeoutMs: 2000 }),
        errors,
        refused: (subject) =>
          until(
            () =>
              errors.some((e) => e.includes(`Permissions Violation for Publish to "${subject}"`)),
            `${user}: a publish violation on ${subject}`,
          ),
      };
    };
    await Promise.race([
      body(login),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("test took longer than 20 s")), 20_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    for (const nc of open) await nc.close().catch(() => {});
    await srv.stop();
  }
}

/** A test against a real nats-server started with deploy/nats/accounts.conf (see {@linkcode withAccounts}). */
function accountsTest(name: string, fn: Parameters<typeof withAccounts>[0]): void {
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn: () => withAccounts(fn) });
}

/** Messages received on `subject` through `bus`, in order, as text. */
function collect(bus: NatsBus, subject: string): string[] {
  const got: string[] = [];
  bus.subscribe(subject, (m) => got.push(dec(m.data)));
  return got;
}

Deno.test({
  name: "deploy: nats-server.conf (with accounts.conf) passes nats-server's own check",
  fn: async () => {
    const bin = await findNatsServer();
    assert.ok(bin, "nats-server is installed (tests/run.ts installs it)");
    const out = await new Deno.Command(bin, {
      args: ["-t", "-c", `${DEPLOY}nats/nats-server.conf`],
      env: PASSWORDS,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /is valid/);
  },
});

Deno.test({
  name: "deploy: the sidecar user creates the stream and publishes alerts, and nothing else",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
    const srv = await startNatsServer({ configFile: `${DEPLOY}nats/accounts.conf` });
    const sidecar = await connect({
      servers: srv.url,
      user: "latentwatch",
      pass: PASSWORDS.LATENTWATCH_NATS_PASSWORD,
    });
    const sidecarErrors = violations(sidecar);
    let soc: NatsConnection | undefined;
    try {
      // the sidecar's own code path: NatsBus.ensureStream and publishDurable
      const bus = new NatsBus(sidecar, { url: srv.url, ackTimeoutMs: 2000 });
      await bus.ensureStream({
        name: STREAM,
        subjects: ["latentwatch.alerts.demo"],
        duplicateWindowMs: 120_000,
      });
      // a second monitor adds its subject to the same stream
      await bus.ensureStream({
        name: STREAM,
        subjects: ["latentwatch.alerts.other"],
        duplicateWindowMs: 120_000,
      });
      const alert = sampleAlert({ severity: "critical" });
      const ack = await bus.publishDurable(
        "latentwatch.alerts.demo",
        new TextEncoder().encode(JSON.stringify(alert)),
        alert.id,
      );
      assert.deepEqual(ack, { stream: STREAM, seq: 1, duplicate: false });
      const again = await bus.publishDurable(
        "latentwatch.alerts.demo",
        new TextEncoder().encode(JSON.stringify(alert)),
        alert.id,
      );
      assert.equal(again.duplicate, true, "dedup by Nats-Msg-Id works under these permissions");

      // anywhere else: refused
      bus.publish("latentwatch.elsewhere", new TextEncoder().encode("x"));
      await until(
        () => sidecarErrors.some((e) => /Publish to "latentwatch.elsewhere"/.test(e)),
        "a publish violation",
      );
      await assert.rejects(
        jetstream(sidecar).publish("latentwatch.tap.v1.x", "x", { timeout: 2000 }),
        /Permissions Violation for Publish to "latentwatch.tap.v1.x"/,
      );
      // it cannot read the alerts back, nor listen to them
      await assert.rejects(
        jetstream(sidecar).consumers.get(STREAM),
        /Permissions Violation for Publish to "\$JS.API.CONSUMER.CREATE.LATENTWATCH_ALERTS/,
      );
      bus.subscribe("latentwatch.alerts.>", () => {});
      await until(
        () => sidecarErrors.some((e) => /Subscription to "latentwatch.alerts.>"/.test(e)),
        "a subscription violation",
      );
      // nor delete the stream
      const jsm = await jetstreamManager(sidecar);
      await assert.rejects(jsm.streams.delete(STREAM), /Permissions Violation/);
      // it can listen to the tap
      const tap = sidecar.subscribe("latentwatch.tap.v1.gpt2.blocks_8.0", { max: 1 });
      await sidecar.flush();
      assert.ok(!tap.isClosed());
      tap.unsubscribe();

      // SOC: reads the stream (as alerts tail does), creates the Vector consumer, writes nothing
      const tail = await runLatentwatch([
        "alerts",
        "tail",
        "--url",
        srv.url.replace("nats://", `nats://soc:${PASSWORDS.LATENTWATCH_SOC_PASSWORD}@`),
        "--all",
        "--json",
        "--limit",
        "1",
      ]);
      assert.equal(tail.code, 0, tail.stderr);
      assert.deepEqual(JSON.parse(tail.stdout), alert);
      assert.ok(!tail.stderr.includes(PASSWORDS.LATENTWATCH_SOC_PASSWORD), "password not echoed");

      soc = await connect({
        servers: srv.url,
        user: "soc",
        pass: PASSWORDS.LATENTWATCH_SOC_PASSWORD,
      });
      const socErrors = violations(soc);
      const socJsm = await jetstreamManager(soc);
      // a durable pull consumer on the native alerts, as Vector's consumers
      // (deploy/nats/vector-*.json) are on the renderings
      // (tests/deploy_render_test.ts reads those)
      const consumerConfig: Partial<ConsumerConfig> = {
        durable_name: "soc-native",
        ack_policy: AckPolicy.Explicit,
        filter_subject: "latentwatch.alerts.>",
      };
      await socJsm.consumers.add(STREAM, consumerConfig);
      const durable = await jetstream(soc).consumers.get(STREAM, "soc-native");
      const m = await durable.next({ expires: 2000 });
      assert.ok(m, "the durable consumer delivers the alert");
      assert.deepEqual(m.json(), alert);
      assert.equal(await m.ackAck(), true, "and takes its ack");

      await assert.rejects(
        jetstream(soc).publish("latentwatch.alerts.demo", "forged", { timeout: 2000 }),
        /Permissions Violation for Publish to "latentwatch.alerts.demo"/,
      );
      soc.publish("latentwatch.alerts.demo", "forged");
      await until(
        () => socErrors.some((e) => /Publish to "latentwatch.alerts.demo"/.test(e)),
        "the SOC publish violation",
      );
      for (
        const op of [
          () => socJsm.streams.delete(STREAM),
          () => socJsm.streams.purge(STREAM),
          () => socJsm.streams.update(STREAM, { subjects: ["latentwatch.>"] }),
        ]
      ) await assert.rejects(op(), /Permissions Violation/);
      assert.equal((await socJsm.streams.info(STREAM)).state.messages, 1, "stream untouched");
    } finally {
      await soc?.close();
      await sidecar.close();
      await srv.stop();
    }
  },
});

accountsTest(
  "deploy: the sidecar user publishes steering commands and a tap user receives them",
  async (login) => {
    const sidecar = await login("latentwatch");
    const tap = await login("tap");
    // a tap listening on every partition of its model and hook
    const commands = collect(tap.bus, "latentwatch.steer.v1.m.h.*");
    await tap.bus.flush();
    sidecar.bus.publish("latentwatch.steer.v1.m.h.0", enc('{"v":1,"id":"c1"}'));
    await until(() => commands.length === 1, "the command at the tap");
    assert.deepEqual(commands, ['{"v":1,"id":"c1"}']);
    assert.deepEqual(sidecar.errors, [], "no violation for the sidecar");
    assert.deepEqual(tap.errors, [], "nor for the tap's subscription");
  },
);

accountsTest(
  "deploy: neither a tap user nor the soc user can publish steering commands",
  async (login) => {
    const sidecar = await login("latentwatch");
    const listener = await login("tap");
    const forger = await login("tap");
    const soc = await login("soc");
    const commands = collect(listener.bus, "latentwatch.steer.v1.>");
    await listener.bus.flush();

    forger.bus.publish("latentwatch.steer.v1.m.h.0", enc('{"v":1,"id":"from-a-tap"}'));
    await forger.refused("latentwatch.steer.v1.m.h.0");
    soc.bus.publish("latentwatch.steer.v1.m.h.0", enc('{"v":1,"id":"from-soc"}'));
    await soc.refused("latentwatch.steer.v1.m.h.0");
    // a tap writes no alerts either
    forger.bus.publish("latentwatch.alerts.demo", enc("forged"));
    await forger.refused("latentwatch.alerts.demo");

    // the refused publishes were dropped before this one, sent after them,
    // reached the listener: it holds the sidecar's command and nothing else
    sidecar.bus.publish("latentwatch.steer.v1.m.h.0", enc('{"v":1,"id":"from-sidecar"}'));
    await until(() => commands.length >= 1, "the sidecar's command");
    await listener.bus.flush();
    assert.deepEqual(commands, ['{"v":1,"id":"from-sidecar"}']);
  },
);

accountsTest(
  "deploy: a tap user publishes steering acknowledgements and the sidecar receives them",
  async (login) => {
    const sidecar = await login("latentwatch");
    const tap = await login("tap");
    const acks = collect(sidecar.bus, "latentwatch.steer-ack.v1.>");
    await sidecar.bus.flush();
    const ack = '{"v":1,"id":"c1","request_id":"r1","status":"applied","position":8}';
    tap.bus.publish("latentwatch.steer-ack.v1.m.h", enc(ack));
    await until(() => acks.length === 1, "the ack at the sidecar");
    assert.deepEqual(acks, [ack]);
    assert.deepEqual(tap.errors, []);
    assert.deepEqual(sidecar.errors, []);
  },
);

Deno.test({
  name:
    "deploy: a tap's gated frame (a request) reaches the sidecar, whose one verdict reaches the tap",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withAccounts(async (login) => {
      const sidecar = await login("latentwatch");
      const tap = await login("tap");
      const verdict = '{"v":1,"request_id":"r1","seq":0,"verdict":"continue"}';
      const frames: { data: string; reply?: string }[] = [];
      sidecar.bus.subscribe("latentwatch.tap.>", (m) => {
        frames.push({ data: dec(m.data), ...(m.reply ? { reply: m.reply } : {}) });
        // the sidecar's answer goes to the request's reply subject (allow_responses)
        if (m.reply) sidecar.bus.publish(m.reply, enc(verdict));
      });
      await sidecar.bus.flush();

      const answer = await tap.bus.request(
        "latentwatch.tap.v1.m.h.0",
        enc("frame"),
        undefined,
        3000,
      );
      assert.equal(dec(answer.data), verdict);
      assert.equal(frames.length, 1);
      assert.equal(frames[0].data, "frame");
      const reply = frames[0].reply ?? "";
      assert.ok(reply.startsWith("_INBOX."), `a reply inbox: ${reply}`);
      assert.deepEqual(sidecar.errors, [], "the verdict was allowed");

      // one reply per request (max 1), and no publishing on inboxes otherwise
      sidecar.bus.publish(reply, enc(verdict));
      await sidecar.refused(reply);
      sidecar.bus.publish("_INBOX.someone.else", enc(verdict));
      await sidecar.refused("_INBOX.someone.else");
    }),
});

accountsTest(
  "deploy: a tap user cannot forge the verdict for another tap's gated frame",
  async (login) => {
    const sidecar = await login("latentwatch");
    const victim = await login("tap");
    const forger = await login("tap");
    const genuine = '{"v":1,"request_id":"r1","seq":0,"verdict":"steer","commands":[]}';
    // the sidecar holds the request until the forger has tried
    let inbox = "";
    sidecar.bus.subscribe("latentwatch.tap.v1.>", (m) => {
      if (m.reply) inbox = m.reply;
    });
    await sidecar.bus.flush();
    const pending = victim.bus.request(
      "latentwatch.tap.v1.m.h.0",
      enc("gated frame"),
      undefined,
      5000,
    );
    await until(() => inbox !== "", "the gated frame at the sidecar");

    // the forger publishes straight to the victim's inbox subject: refused
    forger.bus.publish(inbox, enc('{"v":1,"request_id":"r1","seq":0,"verdict":"continue"}'));
    await forger.refused(inbox);
    // the victim's request still resolves with the sidecar's verdict only
    sidecar.bus.publish(inbox, enc(genuine));
    assert.equal(dec((await pending).data), genuine);
    assert.deepEqual(sidecar.errors, []);
  },
);

// the Vector config (deploy/vector/vector.yaml) and its consumers: tests/deploy_render_test.ts

Deno.test({
  name: "deploy: the rsyslog snippet passes rsyslogd's config check",
  ignore: !(await Deno.stat("/usr/sbin/rsyslogd").then(() => true, () => false)),
  fn: async () => {
    const out = await new Deno.Command("/usr/sbin/rsyslogd", {
      args: ["-N1", "-f", `${DEPLOY}rsyslog/latentwatch.conf`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text);
    assert.match(text, /End of config validation run/);
  },
});

Deno.test({
  name:
    "deploy: serve's own connection logs in with the account (user and password, or in the URL)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
    const srv = await startNatsServer({ configFile: `${DEPLOY}nats/accounts.conf` });
    try {
      const viaOptions = await connectNatsBus({
        url: srv.url,
        user: "latentwatch",
        pass: PASSWORDS.LATENTWATCH_NATS_PASSWORD,
      });
      await viaOptions.ensureStream({
        name: STREAM,
        subjects: ["latentwatch.alerts.demo"],
        duplicateWindowMs: 120_000,
      });
      await viaOptions.close();
      const viaUrl = await connectNatsBus({
        url: srv.url.replace(
          "nats://",
          `nats://latentwatch:${PASSWORDS.LATENTWATCH_NATS_PASSWORD}@`,
        ),
      });
      const alert = sampleAlert({ severity: "high" });
      const ack = await viaUrl.publishDurable(
        "latentwatch.alerts.demo",
        new TextEncoder().encode(JSON.stringify(alert)),
        alert.id,
      );
      assert.equal(ack.stream, STREAM);
      await viaUrl.close();
    } finally {
      await srv.stop();
    }
  },
});

/**
 * Start nats-server with accounts.conf and `password` as the sidecar's
 * password from the environment; "refused" when the server does not start,
 * "rejected" when it starts but the password does not log in as given.
 */
async function serverTakesPassword(password: string): Promise<"ok" | "refused" | "rejected"> {
  for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
  Deno.env.set("LATENTWATCH_NATS_PASSWORD", password);
  let srv;
  try {
    srv = await startNatsServer({ configFile: `${DEPLOY}nats/accounts.conf` });
  } catch {
    return "refused";
  } finally {
    Deno.env.set("LATENTWATCH_NATS_PASSWORD", PASSWORDS.LATENTWATCH_NATS_PASSWORD);
  }
  try {
    return await rawLogin(srv.port, "latentwatch", password) ? "ok" : "rejected";
  } finally {
    await srv.stop();
  }
}

/**
 * Log in with the NATS protocol itself (CONNECT, then PING): true on PONG,
 * false on `-ERR`. A raw socket, because the client library reports a
 * refused login as a socket error that escapes the test.
 */
async function rawLogin(port: number, user: string, pass: string): Promise<boolean> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const connectLine = JSON.stringify({ user, pass, verbose: false, pedantic: false });
    await conn.write(enc(`CONNECT ${connectLine}\r\nPING\r\n`));
    let text = "";
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec(buf.subarray(0, n));
      if (/\r\nPONG\r\n|^PONG\r\n/m.test(text)) return true;
      if (text.includes("-ERR")) return false;
    }
    return false;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

Deno.test({
  name:
    "deploy: passwords from the environment: the documented rule matches what nats-server accepts",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // safe by the rule in src/bus/nats_config_password.ts and deploy/README.md
    const safe = [
      "lw3f9ac2d41b77e0c95a1",
      "f47ac10b-58cc-4372-a567-0e02b2c3d479",
      "Az09_-x",
      "e5",
    ];
    // the failures an outside tester met: number, boolean, space, UUID with a leading digit,
    // and the characters that end or break a config value
    const unsafe = [
      "12345",
      "true",
      "Off",
      "a b",
      "123e4567-e89b-12d3-a456-426614174000",
      "1e5",
      "10MB",
      "ab'cd",
      "ab;cd",
      "ab,cd",
      "ab}cd",
      "ab\\\\cd",
    ];
    for (const pw of safe) {
      assert.equal(natsConfigPasswordProblem(pw), undefined, pw);
      assert.equal(await serverTakesPassword(pw), "ok", `nats-server takes ${pw}`);
    }
    for (const pw of unsafe) {
      assert.ok(natsConfigPasswordProblem(pw), `the rule flags ${pw}`);
      assert.notEqual(await serverTakesPassword(pw), "ok", `nats-server misreads ${pw}`);
    }
  },
});
