import assert from "node:assert/strict";
import { Logger } from "./log.ts";

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
