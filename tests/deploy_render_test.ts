/**
 * One mapping per rendering: deploy/vector/ holds no ECS, Splunk HEC or
 * syslog mapping of its own; it forwards what the sidecar rendered.
 *
 * - The sidecar's own pieces (the monitor file's `type: jetstream` sinks,
 *   built by `createSinks`, over `NatsBus` logged in as `latentwatch`) publish
 *   to a real nats-server run with deploy/nats/accounts.conf; the `soc` user
 *   reads them through the consumers deploy/nats/vector-*.json define and
 *   vector.yaml binds to. What arrives equals an independent call of the
 *   renderer (`toEcs`, `toSyslog5424`, the HEC envelope written out by
 *   hand), byte for byte, and equals what the sidecar's direct syslog and
 *   webhook sinks send.
 * - vector.yaml has no transform, and each of its sinks writes its source's
 *   events as decoded (no field-changing option).
 * - rsyslogd, run with deploy/rsyslog/latentwatch.conf, writes the forwarded
 *   frames' messages unchanged.
 *
 * Vector itself is not installed here: its reading of the YAML is not run.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type ConsumerConfig, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { parse as parseYaml } from "yaml";
import { startNatsServer } from "../src/bus/nats_server.ts";
import { NatsBus } from "../src/bus/nats_bus.ts";
import { parseMonitorConfig } from "../src/config/monitor.ts";
import type { Alert } from "../src/core/alert.ts";
import { toEcs } from "../src/core/render/ecs.ts";
import { octetFrame, toSyslog5424 } from "../src/core/render/syslog.ts";
import { ALERT, MINIMAL, NASTY } from "../src/core/render/test_alert.ts";
import { Logger } from "../src/shared/log.ts";
import { createSinks } from "../src/sinks/factory.ts";
import { JetStreamSink } from "../src/sinks/jetstream/sink.ts";
import { SyslogSink } from "../src/sinks/syslog/sink.ts";
import { WebhookSink } from "../src/sinks/webhook/sink.ts";
import { startFrameReceiver, startHttpReceiver } from "./helpers/receivers.ts";
import { findRsyslogd, skipMessage } from "./helpers/rsyslog.ts";

const DEPLOY = fileURLToPath(new URL("../deploy/", import.meta.url));
const STREAM = "LATENTWATCH_ALERTS";
const PASSWORDS = {
  LATENTWATCH_NATS_PASSWORD: "sidecar-test-pw",
  LATENTWATCH_TAP_PASSWORD: "tap-test-pw",
  LATENTWATCH_SOC_PASSWORD: "soc-test-pw",
  LATENTWATCH_SYS_PASSWORD: "sys-test-pw",
};
// NASTY shares ALERT's id; the stream would take it as a duplicate
const ALERTS: Alert[] = [ALERT, MINIMAL, { ...NASTY, id: "00000000000000000000000000000003" }];
const log = new Logger({ quiet: true, write: () => {} });
const dec = new TextDecoder();

/** The monitor file of the example in vector.yaml's header: the three renderings Vector reads. */
const MONITOR = [
  "monitor: demo",
  "model: m",
  "hook: h",
  "saes: [{ id: s, path: ./sae }]",
  "policies: [p.yaml]",
  "sinks:",
  "  - { type: jetstream, format: ecs }",
  "  - { type: jetstream, shape: splunk-hec, index: latentwatch }",
  "  - { type: jetstream, shape: syslog }",
  "",
].join("\n");

// deno-lint-ignore no-explicit-any
type Yaml = any;
const vectorYaml = async (): Promise<Yaml> =>
  parseYaml(await Deno.readTextFile(`${DEPLOY}vector/vector.yaml`));

/** The consumer definitions in deploy/nats/, by durable name. */
async function consumerFiles(): Promise<Map<string, ConsumerConfig>> {
  const out = new Map<string, ConsumerConfig>();
  for (const e of Deno.readDirSync(`${DEPLOY}nats`)) {
    if (!/^vector-.*\.json$/.test(e.name)) continue;
    const c = JSON.parse(await Deno.readTextFile(`${DEPLOY}nats/${e.name}`)) as ConsumerConfig;
    out.set(c.durable_name!, c);
  }
  return out;
}

/** Each Vector sink, its one input source, and what the source decodes. */
async function vectorPaths(): Promise<
  { sink: string; type: string; source: string; consumer: string; codec: string }[]
> {
  const cfg = await vectorYaml();
  return Object.entries<Yaml>(cfg.sinks).map(([sink, s]) => {
    assert.equal(s.inputs.length, 1, `${sink}: one input`);
    const src = cfg.sources[s.inputs[0]];
    assert.ok(src, `${sink}: its input ${s.inputs[0]} is a source, not a transform`);
    return {
      sink,
      type: s.type,
      source: s.inputs[0],
      consumer: src.jetstream.consumer,
      codec: src.decoding.codec,
    };
  });
}

Deno.test("deploy: vector.yaml forwards the sidecar's renderings with no mapping of its own", async () => {
  const cfg = await vectorYaml();
  const raw = await Deno.readTextFile(`${DEPLOY}vector/vector.yaml`);
  // no transform at all (no VRL), and no sink option that rewrites fields
  assert.equal(cfg.transforms, undefined, "no transforms");
  assert.doesNotMatch(raw, /^\s*(source|id_key|only_fields|except_fields|timestamp_format):/m);
  assert.doesNotMatch(raw, /type:\s*remap/);
  // the Vector log namespace: the source adds no subject/source_type/timestamp fields
  assert.equal(cfg.schema.log_namespace, true);

  const consumers = await consumerFiles();
  const monitor = parseMonitorConfig(MONITOR, "/srv/lw/demo.yaml");
  const subjects = monitor.sinks.map((s) => s.type === "jetstream" ? s.subject : "");
  const paths = await vectorPaths();
  assert.deepEqual(paths.map((p) => [p.sink, p.type, p.codec]), [
    ["elastic", "elasticsearch", "json"],
    ["splunk", "http", "json"],
    ["syslog", "socket", "bytes"],
  ]);
  for (const p of paths) {
    const src = cfg.sources[p.source];
    assert.equal(src.type, "nats");
    assert.equal(src.jetstream.stream, STREAM);
    assert.equal(src.auth.user_password.user, "soc");
    const c = consumers.get(p.consumer);
    assert.ok(c, `${p.source}: consumer ${p.consumer} is defined in deploy/nats/`);
    assert.equal(c.filter_subject, src.subject, `${p.source}: the consumer filters its subject`);
    assert.equal(c.ack_policy, "explicit");
    // it reads the subject the sidecar writes (the monitor file's default subject, any monitor)
    const prefix = src.subject.replace(/>$/, "");
    assert.equal(
      subjects.filter((s) => s.startsWith(prefix)).length,
      1,
      `${src.subject} holds one of ${subjects.join(", ")}`,
    );
  }
  assert.equal(consumers.size, paths.length, "no consumer file without a Vector source");

  const { elastic, splunk, syslog } = cfg.sinks;
  // ECS: written as decoded, in the data stream named after the documents' event.dataset
  assert.deepEqual(elastic.data_stream, {
    type: "logs",
    dataset: "latentwatch.alert",
    namespace: "default",
    auto_routing: false,
    sync_fields: false,
  });
  assert.equal(elastic.data_stream.dataset, (toEcs(ALERT).event as { dataset: string }).dataset);
  assert.equal(elastic.encoding, undefined);
  // Splunk: each event POSTed as it is, several per request, newline-delimited
  assert.match(splunk.uri, /^"?\$\{SPLUNK_HEC_ENDPOINT\}\/services\/collector\/event"?$/);
  assert.deepEqual(splunk.encoding, { codec: "json" });
  assert.deepEqual(splunk.framing, { method: "newline_delimited" });
  assert.deepEqual(splunk.request.headers, { Authorization: "Splunk ${SPLUNK_HEC_TOKEN}" });
  // syslog: the octet-counted frames as they are, no framing added
  assert.deepEqual(syslog.encoding, { codec: "text" });
  assert.deepEqual(syslog.framing, { method: "bytes" });
  // secrets only through the environment
  for (const key of ["password"]) {
    for (const m of raw.matchAll(new RegExp(`^\\s*${key}:\\s*(.+)$`, "gm"))) {
      assert.match(m[1], /^"\$\{[A-Z_]+\}"$/, `${key} comes from the environment`);
    }
  }
});

/** Start nats-server with accounts.conf, run `body`, stop everything; 30 s at most. */
async function withNats(body: (url: string) => Promise<void>): Promise<void> {
  for (const [k, v] of Object.entries(PASSWORDS)) Deno.env.set(k, v);
  const srv = await startNatsServer({ configFile: `${DEPLOY}nats/accounts.conf` });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      body(srv.url),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("test took longer than 30 s")), 30_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await srv.stop();
  }
}

const login = (url: string, user: "latentwatch" | "soc" | "tap") =>
  connect({
    servers: url,
    user,
    pass: PASSWORDS[
      user === "latentwatch"
        ? "LATENTWATCH_NATS_PASSWORD"
        : user === "soc"
        ? "LATENTWATCH_SOC_PASSWORD"
        : "LATENTWATCH_TAP_PASSWORD"
    ],
  });

/** Every message a Vector consumer delivers now, acked, as `[data, headers]`. */
async function drainConsumer(
  soc: NatsConnection,
  name: string,
): Promise<{ data: Uint8Array; msgId: string; type: string }[]> {
  const c = await jetstream(soc).consumers.get(STREAM, name);
  const out: { data: Uint8Array; msgId: string; type: string }[] = [];
  for (;;) {
    const m = await c.next({ expires: 1000 });
    if (!m) return out;
    out.push({
      data: m.data,
      msgId: m.headers?.get("Nats-Msg-Id") ?? "",
      type: m.headers?.get("Content-Type") ?? "",
    });
    assert.equal(await m.ackAck(), true);
  }
}

Deno.test({
  name:
    "deploy: what Vector's consumers deliver is the sidecar's rendering, byte for byte (real nats-server)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNats(async (url) => {
      const sidecar = await login(url, "latentwatch");
      const soc = await login(url, "soc");
      const bus = new NatsBus(sidecar, { url, ackTimeoutMs: 2000 });
      const monitor = parseMonitorConfig(MONITOR, "/srv/lw/demo.yaml");
      const native = new JetStreamSink(bus, {
        subject: monitor.alerts.subject,
        stream: { name: STREAM, subjects: [monitor.alerts.subject], duplicateWindowMs: 120_000 },
        log,
      });
      const rendered = createSinks(monitor.sinks, {
        log,
        hostname: "gw1",
        jetstream: { bus, stream: STREAM, duplicateWindowMs: 120_000 },
      });
      // the sidecar's direct sinks, for the same bytes
      const http = startHttpReceiver(() => 200);
      const frames = startFrameReceiver();
      const direct = [
        new WebhookSink({
          url: http.url,
          shape: "splunk-hec",
          splunk: { token: "t", index: "latentwatch" },
          maxQueue: 10,
          timeoutMs: 2000,
        }, { log, hostname: "gw1" }),
        new SyslogSink(
          { host: "127.0.0.1", port: frames.port, hostname: "gw1", maxQueue: 10, timeoutMs: 2000 },
          { log },
        ),
      ];
      try {
        const all = [native, ...rendered, ...direct];
        for (const s of all) await s.start();
        for (const a of ALERTS) for (const s of all) assert.ok(s.submit(a), s.name);
        for (const s of all) assert.equal(await s.drain(5000), 0, `${s.name} delivered all`);

        const jsm = await jetstreamManager(soc);
        for (const c of (await consumerFiles()).values()) await jsm.consumers.add(STREAM, c);
        const got = new Map<string, Awaited<ReturnType<typeof drainConsumer>>>();
        for (const p of await vectorPaths()) got.set(p.sink, await drainConsumer(soc, p.consumer));

        // Elastic: each document is toEcs(alert), as JSON.stringify writes it
        const ecs = got.get("elastic")!;
        assert.deepEqual(
          ecs.map((m) => dec.decode(m.data)),
          ALERTS.map((a) => JSON.stringify(toEcs(a))),
        );
        assert.deepEqual(ecs.map((m) => m.msgId), ALERTS.map((a) => `${a.id}:ecs`));
        assert.ok(ecs.every((m) => m.type === "application/json"));
        // pinned against ECS 8.11 by hand: a high alert
        const doc = JSON.parse(dec.decode(ecs[0].data));
        assert.equal(doc["@timestamp"], "2026-05-01T12:00:00.123Z");
        assert.equal(doc.ecs.version, "8.11.0");
        assert.equal(doc.event.kind, "alert");
        assert.equal(doc.event.severity, 4, "event.severity is a number (high: 4)");
        assert.equal(doc.event.risk_score, 73);
        assert.equal(doc.event.dataset, "latentwatch.alert");
        assert.deepEqual(doc.event.category, ["intrusion_detection"]);
        assert.equal(doc.event.id, ALERT.id, "event.id stays in the document");
        assert.equal(doc.rule.id, "prompt-injection");
        assert.equal(doc.trace.id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert.equal(JSON.parse(dec.decode(ecs[1].data)).event.severity, 1, "info: 1");
        assert.equal(JSON.parse(dec.decode(ecs[2].data)).event.severity, 5, "critical: 5");

        // Splunk: the HEC envelope written out here, and the webhook sink's own POST bodies
        const hec = got.get("splunk")!;
        const expected = ALERTS.map((a) => ({
          time: Date.parse(a.time) / 1000,
          host: "gw1",
          source: "latentwatch",
          sourcetype: "latentwatch:alert",
          index: "latentwatch",
          event: JSON.parse(JSON.stringify(a)),
        }));
        assert.deepEqual(hec.map((m) => JSON.parse(dec.decode(m.data))), expected);
        assert.equal(JSON.parse(dec.decode(hec[0].data)).time, 1777636800.123);
        assert.deepEqual(hec.map((m) => dec.decode(m.data)), http.received.map((r) => r.body));

        // syslog: the octet-counted RFC 5424 frame, as the syslog sink writes it
        const sys = got.get("syslog")!;
        const messages = ALERTS.map((a) =>
          toSyslog5424(a, { hostname: "gw1", appName: "latentwatch", format: "json" })
        );
        assert.deepEqual(
          sys.map((m) => [...m.data]),
          messages.map((m) => [...octetFrame(m)]),
        );
        assert.deepEqual(frames.messages, messages, "the direct syslog sink sends the same");
        assert.match(
          messages[0],
          /^<131>1 2026-05-01T12:00:00\.123Z gw1 latentwatch - alert \[latentwatch@32473 id="5c1f/,
        );

        // the native alerts stay alone under latentwatch.alerts.>
        const info = await jsm.streams.info(STREAM, { subjects_filter: ">" });
        assert.deepEqual(info.state.subjects, {
          "latentwatch.alerts.demo": 3,
          "latentwatch.render.ecs.demo": 3,
          "latentwatch.render.splunk-hec.demo": 3,
          "latentwatch.render.syslog.demo": 3,
        });
      } finally {
        for (const s of [native, ...rendered, ...direct]) await s.close();
        await http.close();
        await frames.close();
        await soc.close();
        await sidecar.close();
      }
    }),
});

Deno.test({
  name: "deploy: only the sidecar publishes renderings; soc subscribes to them",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withNats(async (url) => {
      const sidecar = await login(url, "latentwatch");
      const soc = await login(url, "soc");
      const tap = await login(url, "tap");
      try {
        const live = soc.subscribe("latentwatch.render.>", { max: 1 });
        await soc.flush();
        const first = (async () => {
          for await (const m of live) return dec.decode(m.data);
        })();
        for (const [who, nc] of [["soc", soc], ["tap", tap]] as const) {
          await assert.rejects(
            jetstream(nc).publish("latentwatch.render.ecs.demo", "forged", { timeout: 2000 }),
            /Permissions Violation for Publish to "latentwatch.render.ecs.demo"/,
            who,
          );
        }
        sidecar.publish("latentwatch.render.ecs.demo", "{}");
        assert.equal(await first, "{}", "the sidecar's publish, and not the refused ones");
      } finally {
        await tap.close();
        await soc.close();
        await sidecar.close();
      }
    }),
});

const rsyslogd = await findRsyslogd();
if (!rsyslogd) console.error(skipMessage("rsyslog", "deploy/rsyslog forwarding test"));

Deno.test({
  name:
    "deploy: rsyslogd with deploy/rsyslog/latentwatch.conf writes the forwarded frames unchanged",
  ignore: !rsyslogd,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "lw-deploy-rsyslog-" });
    // the deploy file, with a free port and a file under the test folder
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const conf = (await Deno.readTextFile(`${DEPLOY}rsyslog/latentwatch.conf`))
      .replace("/var/log/latentwatch/alerts.log", `${dir}/alerts.log`)
      .replace('port="1514"', `port="${port}"`);
    await Deno.writeTextFile(
      `${dir}/rsyslog.conf`,
      `global(workDirectory="${dir}")\n${conf}`,
    );
    const child = new Deno.Command(rsyslogd!, {
      args: ["-n", "-f", `${dir}/rsyslog.conf`, "-i", `${dir}/pid`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const messages = ALERTS.map((a) =>
        toSyslog5424(a, { hostname: "gw1", appName: "latentwatch", format: "json" })
      );
      // what Vector's socket sink writes: the frames, back to back
      let conn: Deno.Conn | undefined;
      for (let i = 0; !conn; i++) {
        conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(async (err) => {
          if (i > 200) throw err;
          await new Promise((r) => setTimeout(r, 25));
          return undefined;
        });
      }
      for (const m of messages) await conn.write(octetFrame(m));
      conn.close();
      let lines: string[] = [];
      for (let i = 0; i < 400 && lines.length < messages.length; i++) {
        await new Promise((r) => setTimeout(r, 25));
        lines = await Deno.readTextFile(`${dir}/alerts.log`).then((t) => t.split("\n").slice(0, -1))
          .catch(() => []);
      }
      assert.deepEqual(lines, messages);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
