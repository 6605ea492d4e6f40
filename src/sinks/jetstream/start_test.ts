/**
 * What the JetStream sink does at start: its spool opened (what the last
 * run left counted and said), and its stream created on a real nats-server,
 * the check deferred while NATS is away (the server stopped), an error the
 * server answers with thrown.
 */
import assert from "node:assert/strict";
import { withBroker } from "../../../tests/helpers/stream.ts";
import { Logger } from "../../shared/log.ts";
import { Spool } from "../spool.ts";
import { checkStream, openSinkSpool } from "./start.ts";
import type { JetStreamSinkStats } from "./types.ts";

function stats(): Pick<JetStreamSinkStats, "spoolTorn" | "spoolCorrupt"> {
  return { spoolTorn: 0, spoolCorrupt: 0 };
}

function logger(lines: string[]): Logger {
  return new Logger({ write: (l) => lines.push(l), maxPerSecond: 1000 });
}

Deno.test("jetstream sink start: no spool folder, no spool", () => {
  const s = stats();
  assert.equal(openSinkSpool({}, s), null);
  assert.deepEqual(s, stats());
});

Deno.test("jetstream sink start: what the last run left is counted and said", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-js-start-" });
  try {
    const last = Spool.open(dir);
    for (const id of ["a", "b"]) {
      last.append({ id, data: new TextEncoder().encode("{}"), firstAttemptMs: 0 });
    }
    last.close();
    const [log] = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".log"));
    const bytes = Deno.readFileSync(`${dir}/${log.name}`);
    Deno.writeFileSync(`${dir}/${log.name}`, bytes.subarray(0, bytes.length - 3)); // torn tail

    const lines: string[] = [];
    const s = stats();
    const spool = openSinkSpool({ spoolDir: dir, log: logger(lines) }, s);
    try {
      assert.equal(spool?.pending, 1);
      assert.equal(s.spoolTorn, 1);
      assert.equal(s.spoolCorrupt, 0);
      assert.ok(
        lines.some((l) => l.startsWith("error alert.spool_damaged") && l.includes("torn=1")),
      );
      assert.ok(
        lines.some((l) => l.startsWith("warn alert.spool_loaded") && l.includes("alerts=1")),
      );
    } finally {
      spool?.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const stream = { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 };

Deno.test("jetstream sink start: the stream is created, or its check deferred while NATS is away", () =>
  withBroker(async ({ bus, away }) => {
    const lines: string[] = [];
    await checkStream(bus, { stream, log: logger(lines) });
    assert.deepEqual(lines, []);
    assert.deepEqual(
      await bus.publishDurable("alerts.t", new Uint8Array([1]), "m1"),
      { stream: "A", seq: 1, duplicate: false },
      "the stream exists and acknowledges",
    );
    await away();
    await checkStream(bus, { stream, log: logger(lines) });
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^warn alert\.stream_check_deferred .*NATS unreachable/);
    assert.match(lines[0], /stream=A\b/);
  }));

Deno.test("jetstream sink start: an error the server answers with is thrown, not deferred", () =>
  withBroker(async ({ bus }) => {
    // another stream holds the subject already: the server refuses the stream
    await bus.ensureStream({ name: "OTHER", subjects: ["alerts.t"], duplicateWindowMs: 60_000 });
    const lines: string[] = [];
    await assert.rejects(checkStream(bus, { stream, log: logger(lines) }), /overlap/);
    assert.deepEqual(lines, [], "nothing deferred");
  }));
