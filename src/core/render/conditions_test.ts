import assert from "node:assert/strict";
import { toCef } from "./cef.ts";
import { conditionText } from "./common.ts";
import { toEcs } from "./ecs.ts";
import { toJson } from "./json.ts";
import { toOcsf } from "./ocsf.ts";
import { toSyslog5424 } from "./syslog.ts";
import { MINIMAL, WITH_CONDITIONS } from "./test_alert.ts";

/** The three conditions of WITH_CONDITIONS in words, written by hand. */
const TEXTS = [
  "override: sae res12:1234 'instruction override' max 8 above 3 = 5.25 (held, completed the rule)",
  "jailbreak.0: probe jailbreak:0 ema half_life 4 above 0.5 = 0.91 (held)",
  "quiet: sae res12:7 token below 1 = 0 (held)",
];

Deno.test("conditionText: name, signal, window, op, threshold, value, held, completed", () => {
  assert.deepEqual(WITH_CONDITIONS.conditions!.map(conditionText), TEXTS);
  assert.equal(
    conditionText({
      name: "c",
      sae: "s",
      index: 2,
      pool: { kind: "count", window: 5, above: 0.25 },
      op: "above",
      threshold: 2,
      value: 1.23456789,
      held: false,
    }),
    "c: sae s:2 count 5 above 0.25 above 2 = 1.23457 (not held)",
  );
  assert.equal(
    conditionText({
      name: "e_family",
      sae: "s",
      index: 3,
      label: "starts with E",
      family: { members: 4, combine: "max" },
      pool: { kind: "max", window: 1 },
      op: "above",
      threshold: 1,
      value: 2,
      held: true,
      completed: true,
    }),
    "e_family: sae s:3 'starts with E' family (4 members, max) max 1 above 1 = 2 (held, completed the rule)",
  );
});

Deno.test("CEF lists every condition (lwConditions) and the one that completed (lwCompletedBy)", () => {
  const line = toCef(WITH_CONDITIONS);
  // '=' is escaped in extension values
  assert.ok(
    line.endsWith(
      " lwCompletedBy=override lwConditions=" + TEXTS.map((t) => t.replace("=", "\\=")).join("; "),
    ),
    line,
  );
  assert.ok(!toCef(MINIMAL).includes("lwConditions"));
});

Deno.test("syslog structured data: completedBy and cond1..cond3", () => {
  const msg = toSyslog5424(WITH_CONDITIONS, {
    hostname: "gw1",
    appName: "latentwatch",
    format: "json",
  });
  const sd = msg.slice(msg.indexOf("["), msg.indexOf("] ") + 1);
  assert.ok(
    sd.endsWith(
      ' completedBy="override" ' + TEXTS.map((t, k) => `cond${k + 1}="${t}"`).join(" ") + "]",
    ),
    sd,
  );
  // MSG is the native JSON, conditions included
  const json = JSON.parse(msg.slice(msg.indexOf("] ") + 2));
  assert.deepEqual(json.conditions, WITH_CONDITIONS.conditions);
});

Deno.test("JSON, ECS and OCSF carry the conditions and completedBy as the alert has them", () => {
  const json = JSON.parse(toJson(WITH_CONDITIONS));
  assert.equal(json.completedBy, "override");
  assert.deepEqual(json.conditions.map((c: { name: string }) => c.name), [
    "override",
    "jailbreak.0",
    "quiet",
  ]);
  const ecs = toEcs(WITH_CONDITIONS).latentwatch as Record<string, unknown>;
  const ocsf = toOcsf(WITH_CONDITIONS).unmapped as Record<string, unknown>;
  for (const doc of [ecs, ocsf]) {
    assert.equal(doc.completed_by, "override");
    const conds = doc.conditions as Record<string, unknown>[];
    assert.deepEqual(conds.map((c) => [c.name, c.value, c.threshold, c.pool, c.held]), [
      ["override", 5.25, 3, { kind: "max", window: 8 }, true],
      ["jailbreak.0", 0.91, 0.5, { kind: "ema", halfLife: 4 }, true],
      ["quiet", 0, 1, { kind: "token" }, true],
    ]);
    assert.equal(conds[0].completed, true);
  }
  assert.equal((toEcs(MINIMAL).latentwatch as Record<string, unknown>).conditions, undefined);
});
