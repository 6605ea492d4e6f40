import assert from "node:assert/strict";
import { ECS_VERSION, toEcs } from "./ecs.ts";
import { ALERT, MINIMAL, NASTY } from "./test_alert.ts";

type O = Record<string, unknown>;

const CATEGORIES = [
  "api",
  "authentication",
  "configuration",
  "database",
  "driver",
  "email",
  "file",
  "host",
  "iam",
  "intrusion_detection",
  "library",
  "malware",
  "network",
  "package",
  "process",
  "registry",
  "session",
  "threat",
  "vulnerability",
  "web",
];
const TYPES = [
  "access",
  "admin",
  "allowed",
  "change",
  "connection",
  "creation",
  "deletion",
  "denied",
  "end",
  "error",
  "group",
  "indicator",
  "info",
  "installation",
  "protocol",
  "start",
  "user",
];

Deno.test("toEcs: allowed values and types, for every alert shape", () => {
  for (const alert of [ALERT, MINIMAL, NASTY]) {
    const doc = toEcs(alert);
    assert.match(doc["@timestamp"] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal((doc.ecs as O).version, ECS_VERSION);
    const ev = doc.event as O;
    assert.equal(ev.kind, "alert");
    for (const c of ev.category as string[]) assert.ok(CATEGORIES.includes(c), c);
    for (const t of ev.type as string[]) assert.ok(TYPES.includes(t), t);
    assert.ok(Number.isInteger(ev.severity));
    assert.ok((ev.risk_score as number) >= 0 && (ev.risk_score as number) <= 100);
    assert.equal(ev.id, alert.id);
    const rule = doc.rule as O;
    assert.equal(rule.id, alert.policy.id);
    assert.equal(rule.name, alert.title);
    for (const [k, v] of Object.entries(doc.labels as O)) {
      assert.ok(!k.includes("."), `label key ${k} has no dot`);
      assert.equal(typeof v, "string");
    }
    assert.deepEqual(JSON.parse(JSON.stringify(doc)), doc);
  }
});

Deno.test("toEcs: the fixed alert", () => {
  const doc = toEcs(ALERT);
  assert.equal(doc["@timestamp"], "2026-05-01T12:00:00.123Z");
  assert.equal(doc.message, ALERT.description);
  assert.deepEqual(doc.event, {
    id: ALERT.id,
    kind: "alert",
    category: ["intrusion_detection"],
    type: ["info", "denied"],
    action: "steer",
    severity: 4,
    risk_score: 73,
    risk_score_norm: 73,
    dataset: "latentwatch.alert",
    module: "latentwatch",
    provider: "demo",
  });
  assert.deepEqual(doc.rule, {
    id: "prompt-injection",
    name: "Prompt injection features active",
    description: ALERT.description,
    version: "a1b2c3d4",
    ruleset: "policies/demo.yaml",
  });
  assert.deepEqual(doc.threat, {
    framework: "MITRE ATLAS",
    technique: {
      id: ["AML.T0054", "AML.T0051"],
      name: ["LLM Jailbreak", "LLM Prompt Injection"],
      reference: [
        "https://atlas.mitre.org/techniques/AML.T0054",
        "https://atlas.mitre.org/techniques/AML.T0051",
      ],
      subtechnique: {
        id: ["AML.T0051.000"],
        name: ["Direct"],
        reference: ["https://atlas.mitre.org/techniques/AML.T0051.000"],
      },
    },
    tactic: {
      id: ["AML.TA0005", "AML.TA0012", "AML.TA0007"],
      name: ["Execution", "Privilege Escalation", "Defense Evasion"],
      reference: [
        "https://atlas.mitre.org/tactics/AML.TA0005",
        "https://atlas.mitre.org/tactics/AML.TA0012",
        "https://atlas.mitre.org/tactics/AML.TA0007",
      ],
    },
  });
  assert.deepEqual(doc.trace, { id: "4bf92f3577b34da6a3ce929d0e0e4736" });
  assert.deepEqual(doc.span, { id: "00f067aa0ba902b7" });
  assert.deepEqual(doc.labels, {
    monitor: "demo",
    request_id: "req-1",
    hook: "blocks.12.hook_resid_post",
    meta_app: "chat",
  });
  assert.deepEqual(doc.organization, { id: "acme" });
  assert.deepEqual(doc.gen_ai, { request: { model: "gemma-2-2b" } });
  assert.deepEqual(doc.tags, ALERT.tags);
  const lw = doc.latentwatch as O;
  assert.deepEqual(lw.tokens, { start: 12, end: 14, count: 2, text: "Ignore previous" });
  assert.deepEqual(lw.evidence, ALERT.evidence);
});

Deno.test("toEcs: minimal alert has no threat, trace or organization", () => {
  const doc = toEcs(MINIMAL);
  assert.equal(doc.threat, undefined);
  assert.equal(doc.trace, undefined);
  assert.equal(doc.organization, undefined);
  assert.deepEqual((doc.event as O).type, ["info"]);
  assert.equal((doc.event as O).severity, 1);
});
