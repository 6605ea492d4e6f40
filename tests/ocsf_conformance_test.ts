/**
 * What latentwatch emits as OCSF is valid against the official schema of the
 * version it declares: every kind of alert (`ALERT_KINDS`), every severity,
 * as `toOcsf` renders it, as the sinks render it (`renderObject`, syslog MSG)
 * and as docs/alerts.md shows it.
 */
import assert from "node:assert/strict";
import { traceContext } from "../src/core/alert.ts";
import { toOcsf } from "../src/core/render/ocsf.ts";
import { toSyslog5424 } from "../src/core/render/syslog.ts";
import { ALERT, ALERT_KINDS } from "../src/core/render/test_alert.ts";
import { renderObject } from "../src/sinks/formats.ts";
import { loadOcsfSchema } from "./helpers/ocsf_schema.ts";
import { formatIssues, validateOcsf } from "./helpers/ocsf_validator.ts";

const schema = await loadOcsfSchema(new URL("./testdata/ocsf-1.3.0/", import.meta.url));

/** Per alert kind: how many rendered events validate, and the first failure's errors. */
function validateKinds(render: (a: (typeof ALERT_KINDS)[string][number]) => unknown) {
  return Object.entries(ALERT_KINDS).map(([kind, alerts]) => {
    const reports = alerts.map((a) => validateOcsf(schema, render(a)));
    const bad = reports.find((r) => !r.valid);
    return {
      kind,
      valid: reports.filter((r) => r.valid).length,
      total: reports.length,
      ...(bad ? { firstErrors: formatIssues(bad.errors) } : {}),
    };
  });
}

Deno.test("ocsf conformance: every kind of alert renders valid OCSF 1.3.0", () => {
  const rows = validateKinds((a) => toOcsf(a));
  console.log(
    rows.map((r) => `  ${r.kind.padEnd(28)} ${r.valid}/${r.total} valid`).join("\n"),
  );
  for (const r of rows) assert.equal(r.valid, r.total, `${r.kind}:\n${r.firstErrors}`);
  assert.ok(rows.length >= 12 && rows.every((r) => r.total >= 5));
});

Deno.test("ocsf conformance: the sinks' OCSF (renderObject, syslog MSG) validates", () => {
  for (const [kind, alerts] of Object.entries(ALERT_KINDS)) {
    for (const a of alerts) {
      const obj = validateOcsf(schema, renderObject(a, "ocsf"));
      assert.ok(obj.valid, `${kind} renderObject:\n${formatIssues(obj.errors)}`);
      const line = toSyslog5424(a, { hostname: "h", appName: "latentwatch", format: "ocsf" });
      const msg = JSON.parse(line.slice(line.indexOf('{"class_uid"')));
      const sys = validateOcsf(schema, msg);
      assert.ok(sys.valid, `${kind} syslog MSG:\n${formatIssues(sys.errors)}`);
    }
  }
});

Deno.test("ocsf conformance: a custom product still validates, and what changed is caught", () => {
  const [alert] = ALERT_KINDS.typical;
  const product = { vendor: "acme", name: "guard", version: "2" };
  const f = toOcsf(alert, { product }) as Record<string, unknown>;
  assert.ok(validateOcsf(schema, f).valid);
  const broken = { ...f, is_alert: true };
  assert.deepEqual(validateOcsf(schema, broken).errors.map((e) => e.path), ["is_alert"]);
});

/** The ```json blocks of a markdown section, by heading prefix. */
function jsonBlocksUnder(markdown: string, heading: string): unknown[] {
  const start = markdown.indexOf(`\n${heading}`);
  assert.ok(start >= 0, `heading '${heading}' in docs/alerts.md`);
  const next = markdown.indexOf("\n## ", start + 1);
  const section = markdown.slice(start, next < 0 ? undefined : next);
  return [...section.matchAll(/```json\n([\s\S]*?)\n```/g)].map((m) => JSON.parse(m[1]));
}

Deno.test("ocsf conformance: docs/alerts.md's OCSF examples validate", async () => {
  const md = await Deno.readTextFile(new URL("../docs/alerts.md", import.meta.url));
  const blocks = jsonBlocksUnder(md, "## OCSF Detection Finding");
  assert.ok(blocks.length >= 1, "docs/alerts.md has an OCSF example");
  blocks.forEach((b, i) => {
    const r = validateOcsf(schema, b);
    assert.ok(r.valid, `OCSF example ${i + 1}:\n${formatIssues(r.errors)}`);
  });
});

Deno.test("ocsf conformance: docs/alerts.md's OCSF example is what toOcsf renders", async () => {
  const md = await Deno.readTextFile(new URL("../docs/alerts.md", import.meta.url));
  const [example] = jsonBlocksUnder(md, "## OCSF Detection Finding");
  const trace = traceContext(ALERT.traceparent, "congo=t61rcWkgMzE");
  assert.deepEqual(example, toOcsf({ ...ALERT, trace }));
});
