import assert from "node:assert/strict";
import { toJson } from "./json.ts";
import { ALERT, MINIMAL, NASTY } from "./test_alert.ts";

Deno.test("toJson: the native record, one line, round-trips", () => {
  for (const alert of [ALERT, MINIMAL, NASTY]) {
    const line = toJson(alert);
    assert.ok(!line.includes("\n"));
    assert.deepEqual(JSON.parse(line), JSON.parse(JSON.stringify(alert)));
    assert.equal(JSON.parse(line).schema, "latentwatch.alert/v1");
  }
});

Deno.test("toJson: field order of the fixed alert", () => {
  assert.deepEqual(Object.keys(JSON.parse(toJson(ALERT))), [
    "schema",
    "id",
    "time",
    "monitor",
    "policy",
    "severity",
    "title",
    "description",
    "tags",
    "model",
    "hook",
    "requestId",
    "tenant",
    "meta",
    "phase",
    "tokens",
    "latent",
    "evidence",
    "steer",
    "traceparent",
    "latents",
    "probes",
  ]);
});
