import assert from "node:assert/strict";
import { SINK_TYPES, sinkKind, SINKS } from "./registry.ts";

Deno.test("registry: one kind per type, each schema accepting only its own type", () => {
  assert.deepEqual(SINK_TYPES, ["syslog", "webhook", "stdout", "file", "jetstream"]);
  assert.equal(new Set(SINK_TYPES).size, SINKS.length);
  for (const kind of SINKS) {
    assert.equal(sinkKind(kind.type), kind);
    for (const other of SINK_TYPES) {
      if (other === kind.type) continue;
      assert.equal(kind.schema.safeParse({ type: other }).success, false);
    }
  }
  assert.equal(sinkKind("carrier-pigeon"), undefined);
});

Deno.test("registry: each kind names an unnamed entry from its destination", () => {
  const names = SINKS.map((k) =>
    k.defaultName(
      { type: k.type, address: "h:514", url: "http://h:1/x", path: "a.jsonl", format: "ecs" },
      "demo",
    )
  );
  assert.deepEqual(names, [
    "syslog:h:514",
    "webhook:h:1",
    "stdout",
    "file:a.jsonl",
    "jetstream:latentwatch.render.ecs.demo",
  ]);
});
