import assert from "node:assert/strict";
import { ATLAS_TACTICS, ATLAS_TECHNIQUE_ID, ATLAS_TECHNIQUES, atlasOf, atlasUrl } from "./atlas.ts";
import { traceContext } from "../alert.ts";
import { AlertRenderError, alertTimeMs, atlasOfAlert, spanText, traceOfAlert } from "./common.ts";
import { ALERT, MINIMAL } from "./test_alert.ts";

Deno.test("atlasOf: techniques among tags, names and tactics, parents' tactics for sub-techniques", () => {
  assert.deepEqual(
    atlasOf(["x", "AML.T0051.001", "AML.TA0005", "aml.t0054", "AML.T0051.001", "AML.T0056"]),
    [
      {
        id: "AML.T0051.001",
        name: "Indirect",
        tactics: [{ id: "AML.TA0005", name: "Execution" }],
      },
      {
        id: "AML.T0056",
        name: "Extract LLM System Prompt",
        tactics: [{ id: "AML.TA0010", name: "Exfiltration" }],
      },
    ],
  );
  assert.deepEqual(atlasOf(["AML.T0999"]), [{ id: "AML.T0999" }]);
  assert.deepEqual(atlasOf(undefined), []);
});

Deno.test("atlas catalogue: well-formed ids, every tactic known", () => {
  for (const [id, t] of Object.entries(ATLAS_TECHNIQUES)) {
    assert.match(id, ATLAS_TECHNIQUE_ID);
    for (const tc of t.tactics ?? []) assert.ok(tc in ATLAS_TACTICS, tc);
    if (id.length > 9) assert.ok(id.slice(0, 9) in ATLAS_TECHNIQUES, `parent of ${id}`);
  }
  assert.equal(atlasUrl("AML.TA0005"), "https://atlas.mitre.org/tactics/AML.TA0005");
  assert.equal(atlasUrl("AML.T0051"), "https://atlas.mitre.org/techniques/AML.T0051");
});

Deno.test("traceContext: W3C traceparent rules", () => {
  const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  assert.deepEqual(traceContext(tp, "congo=t61rcWkgMzE"), {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    sampled: true,
    tracestate: "congo=t61rcWkgMzE",
  });
  assert.equal(traceContext(tp.replace(/-01$/, "-00"))?.sampled, false);
  assert.equal(traceContext(undefined), undefined);
  assert.equal(traceContext(tp.toUpperCase()), undefined);
  assert.equal(
    traceContext(tp.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0".repeat(32))),
    undefined,
  );
  assert.equal(traceContext(tp.replace("00f067aa0ba902b7", "0".repeat(16))), undefined);
  assert.equal(traceContext("ff" + tp.slice(2)), undefined);
  assert.equal(traceContext(tp + "-extra"), undefined); // version 00 has exactly four fields
  assert.equal(traceContext("01" + tp.slice(2) + "-future")?.traceId, tp.slice(3, 35));
  assert.equal(traceContext("00-abc-def-01"), undefined);
});

Deno.test("derived fields: atlas and trace fall back to tags and traceparent; span text in order", () => {
  assert.deepEqual(atlasOfAlert(ALERT).map((t) => t.id), ["AML.T0051.000", "AML.T0054"]);
  assert.deepEqual(atlasOfAlert({ ...ALERT, atlas: [] }), []);
  assert.equal(traceOfAlert(ALERT)?.spanId, "00f067aa0ba902b7");
  assert.equal(traceOfAlert(MINIMAL), undefined);
  assert.equal(
    spanText({ ...ALERT, evidence: [...ALERT.evidence].reverse() }),
    "Ignore previous",
  );
  assert.equal(spanText(MINIMAL), undefined);
  assert.equal(alertTimeMs(ALERT), 1777636800123);
  assert.equal(alertTimeMs({ time: "2026-05-01T14:00:00.123+02:00" }), 1777636800123);
  assert.throws(() => alertTimeMs({ time: "1777636800123" }), AlertRenderError);
});
