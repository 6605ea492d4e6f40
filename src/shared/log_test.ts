import assert from "node:assert/strict";
import { LogFormatError, Logger } from "./log.ts";

Deno.test("logger: key=value lines, quoted when needed, rate limited per event", () => {
  const lines: string[] = [];
  const log = new Logger({ write: (l) => lines.push(l), maxPerSecond: 3 });
  log.warn("frame.rejected", { subject: "a.b", error: "bad value here", n: 2 });
  assert.equal(lines[0], 'warn frame.rejected subject=a.b error="bad value here" n=2');
  for (let i = 0; i < 10; i++) log.warn("flood", { i });
  assert.equal(lines.filter((l) => l.startsWith("warn flood")).length, 3);
  log.error("other");
  assert.equal(lines[lines.length - 1], "error other", "other events are not limited");
});

Deno.test("logger: flush reports lines suppressed in a burst that was never followed up", () => {
  const lines: string[] = [];
  const log = new Logger({ write: (l) => lines.push(l), maxPerSecond: 2 });
  for (let i = 0; i < 7; i++) log.error("frame.dropped", { i });
  log.flush();
  assert.equal(lines[lines.length - 1], "warn log.suppressed event=frame.dropped lines=5");
});

Deno.test("logger: text lines on stderr start with their ISO time", () => {
  const lines: string[] = [];
  const at = Date.UTC(2026, 11, 3, 20, 15, 21, 123);
  const log = new Logger({ write: (l) => lines.push(l), timestamps: true, now: () => at });
  log.info("state.dir", { dir: "/var/lib/latentwatch", source: "$STATE_DIRECTORY" });
  assert.equal(
    lines[0],
    '2026-12-03T20:15:21.123Z info state.dir dir=/var/lib/latentwatch source="$STATE_DIRECTORY"',
  );
});

Deno.test("logger: json lines parse, one object each, with ts, level, event and fields", () => {
  const lines: string[] = [];
  const at = Date.UTC(2026, 0, 2, 3, 4, 5, 6);
  const log = new Logger({
    write: (l) => lines.push(l),
    format: "json",
    now: () => at,
    maxPerSecond: 1,
  });
  log.warn("frame.rejected", { subject: "a b", n: 2, ok: false, gone: undefined });
  log.warn("frame.rejected", { n: 3 }); // suppressed
  log.flush();
  assert.equal(lines.length, 2);
  assert.deepEqual(JSON.parse(lines[0]), {
    ts: "2026-01-02T03:04:05.006Z",
    level: "warn",
    event: "frame.rejected",
    fields: { subject: "a b", n: 2, ok: false },
  });
  assert.deepEqual(JSON.parse(lines[1]).fields, { event: "frame.rejected", lines: 1 });
  assert.ok(!lines[0].includes("\n"));
});

Deno.test("logger: the format comes from $LATENTWATCH_LOG_FORMAT, a bad one is refused by name", () => {
  const before = Deno.env.get("LATENTWATCH_LOG_FORMAT");
  try {
    Deno.env.set("LATENTWATCH_LOG_FORMAT", "json");
    assert.equal(new Logger().format, "json");
    Deno.env.set("LATENTWATCH_LOG_FORMAT", "xml");
    assert.throws(
      () => new Logger(),
      (err: Error) =>
        err instanceof LogFormatError &&
        err.message === "$LATENTWATCH_LOG_FORMAT: expected one of text, json, found 'xml'",
    );
    Deno.env.delete("LATENTWATCH_LOG_FORMAT");
    assert.equal(new Logger().format, "text");
  } finally {
    if (before === undefined) Deno.env.delete("LATENTWATCH_LOG_FORMAT");
    else Deno.env.set("LATENTWATCH_LOG_FORMAT", before);
  }
});
