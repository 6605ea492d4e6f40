import assert from "node:assert/strict";
import { stableId } from "./alert.ts";

Deno.test("stableId: two FNV-1a 64 lanes, the values the BigInt implementation gave", () => {
  // recorded from the earlier BigInt implementation: alert ids and policy
  // versions must not change when the arithmetic does
  assert.equal(stableId(""), "cbf29ce48422232584222325cbf29ce4");
  assert.equal(stableId("a"), "af63dc4c8601ec8c789e3e398d3ff5ff");
  assert.equal(stableId("é€😀"), "0a289ca40199fa0640a78d5a76b85459");
  assert.equal(stableId("demo|req-1|prompt-injection|12"), "86022dc8cac58ba1e30b5a24e17cf278");
  assert.equal(stableId("x".repeat(10000)), "4118176bad223b6594687a6f832787e4");
});

Deno.test("stableId: a megabyte hashes in well under a second", () => {
  const t0 = performance.now();
  stableId("y".repeat(1 << 20));
  assert.ok(performance.now() - t0 < 1000);
});
