import assert from "node:assert/strict";
import { parseMonitorConfig } from "../config/monitor.ts";
import { redactAlert } from "../core/redact.ts";
import { SECRET, SECRETS } from "../core/render/test_alert.ts";
import { Logger } from "../shared/log.ts";
import { MemoryBus } from "../bus/memory_bus.ts";
import { startHttpReceiver } from "../../tests/helpers/receivers.ts";
import { waitUntil } from "../../tests/helpers/stream.ts";
import { createSinks } from "./factory.ts";
import { hmac16 } from "../../tests/helpers/hmac_reference.ts";

const log = new Logger({ quiet: true, write: () => {} });
const HEAD = "monitor: demo\nmodel: m\nhook: h\nsaes: [{id: s, path: ./s}]\npolicies: [./p.yaml]\n";

Deno.test("sinks[].redact: file and webhook sinks send no secret; stricter of alert and sink wins", async () => {
  const rx = startHttpReceiver(() => 200);
  const dir = await Deno.makeTempDir();
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n" +
      "  - { type: file, name: tokens, path: tokens.jsonl, format: ecs, redact: tokens }\n" +
      "  - { type: file, name: hash, path: hash.jsonl, format: ocsf, redact: hash }\n" +
      "  - { type: file, name: plain, path: plain.jsonl }\n" +
      `  - { type: webhook, url: '${rx.url}', redact: hash }\n`,
    `${dir}/m.yaml`,
  );
  const sinks = createSinks(cfg.sinks, { log, redactHashKey: "k3y" });
  try {
    await Promise.all(sinks.map((s) => s.start()));
    // one alert as raised (no rule redaction), one whose rule asked for hash
    const ruleHashed = { ...redactAlert(SECRET, { mode: "hash", hashKey: "k3y" }), id: "b" };
    for (const s of sinks) {
      assert.ok(s.submit(SECRET));
      assert.ok(s.submit(ruleHashed));
    }
    for (const s of sinks.slice(0, 3)) assert.equal(await s.drain(2000), 0);
    await waitUntil(() => rx.received.length === 2, "2 posts at the webhook", 5000);
    const read = (f: string) => Deno.readFile(`${dir}/${f}`);
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    const files = {
      tokens: text(await read("tokens.jsonl")),
      hash: text(await read("hash.jsonl")),
      plain: text(await read("plain.jsonl")),
      webhook: rx.received.map((r) => r.body).join("\n"),
    };
    for (const name of ["tokens", "hash", "webhook"] as const) {
      for (const s of SECRETS) assert.ok(!files[name].includes(s), `${name} leaks ${s}`);
    }
    // the plain sink: the first alert verbatim, the second as its rule redacted it
    const [first, second] = files.plain.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(first.evidence[0].text, " hunter2024");
    assert.equal(first.description, "saw ' hunter2024 sk-live-9f8e' on tokens 3-6");
    assert.equal(second.redaction, "hash");
    assert.equal(second.evidence[0].text, `hmac-sha256:${await hmac16("k3y", " hunter2024")}`);
    // the tokens sink: the marker in both (tokens beats the rule's hash)
    for (const line of files.tokens.trimEnd().split("\n")) {
      const doc = JSON.parse(line);
      assert.equal(doc.message, "saw '[redacted]' on tokens 3-6");
    }
    // the hash sinks: keyed digests, the same for the same text in both alerts
    const want = `hmac-sha256:${await hmac16("k3y", " hunter2024")}`;
    const posted = rx.received.map((r) => JSON.parse(r.body));
    assert.deepEqual(posted.map((a) => a.evidence[0].text), [want, want]);
    const ocsfLines = files.hash.trimEnd().split("\n");
    assert.equal(ocsfLines.length, 2);
    for (const l of ocsfLines) assert.ok(l.includes(want), "each OCSF line carries the digest");
    // the alert handed in is never changed
    assert.equal(SECRET.evidence[0].text, " hunter2024");
  } finally {
    for (const s of sinks) await s.close();
    await rx.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The in-process bus, down until `up`: a jetstream sink spools everything meanwhile. */
class DownBus extends MemoryBus {
  up = false;
  override get connected(): boolean {
    return this.up && super.connected;
  }
}

/** Every file under `dir`, concatenated. */
async function allBytes(dir: string): Promise<string> {
  let out = "";
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    out += e.isDirectory ? await allBytes(p) : new TextDecoder().decode(await Deno.readFile(p));
  }
  return out;
}

Deno.test("sinks[].redact: a jetstream rendering's spool on disk and its publication hold no secret", async () => {
  const dir = await Deno.makeTempDir();
  const bus = new DownBus();
  const cfg = parseMonitorConfig(
    HEAD + "sinks:\n  - { type: jetstream, format: ecs, redact: tokens }\n",
    `${dir}/m.yaml`,
  );
  const [sink] = createSinks(cfg.sinks, {
    log,
    jetstream: { bus, stream: "A", duplicateWindowMs: 60_000, spoolDir: `${dir}/spool` },
  });
  try {
    await sink.start();
    assert.ok(sink.submit(SECRET));
    const spooled = await allBytes(`${dir}/spool`);
    assert.ok(spooled.includes("[redacted]"), "the alert is in the spool");
    for (const s of SECRETS) assert.ok(!spooled.includes(s), `the spool holds ${s}`);
    bus.up = true;
    await bus.ensureStream({
      name: "A",
      subjects: ["latentwatch.alerts.>"],
      duplicateWindowMs: 60_000,
    });
    await waitUntil(() => sink.stats.delivered === 1, "the spooled alert published", 5000);
    const [msg] = bus.streamMessages("A");
    const published = new TextDecoder().decode(msg.data);
    assert.match(published, /saw '\[redacted\]' on tokens 3-6/);
    for (const s of SECRETS) assert.ok(!published.includes(s), `published ${s}`);
  } finally {
    await sink.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
});
