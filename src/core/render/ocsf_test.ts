import assert from "node:assert/strict";
import { OCSF_SEVERITY } from "./common.ts";
import { OCSF_VERSION, toOcsf } from "./ocsf.ts";
import { ALERT, MINIMAL, NASTY } from "./test_alert.ts";
import type { Alert } from "../alert.ts";
import { SEVERITIES } from "../policy/ast.ts";

type O = Record<string, unknown>;
const obj = (v: unknown, what: string): O => {
  assert.ok(typeof v === "object" && v !== null && !Array.isArray(v), `${what} is an object`);
  return v as O;
};
const int = (v: unknown, what: string) => assert.ok(Number.isInteger(v), `${what} is an integer`);
const str = (v: unknown, what: string) =>
  assert.ok(typeof v === "string" && v.length > 0, `${what} is a non-empty string`);

/** Every attribute Detection Finding requires (OCSF 1.3.0), with its type and enum. */
function checkRequired(f: O): void {
  assert.equal(f.class_uid, 2004);
  assert.equal(f.category_uid, 2);
  int(f.activity_id, "activity_id");
  assert.ok([0, 1, 2, 3, 99].includes(f.activity_id as number));
  int(f.type_uid, "type_uid");
  assert.equal(f.type_uid, (f.class_uid as number) * 100 + (f.activity_id as number));
  int(f.severity_id, "severity_id");
  assert.ok([0, 1, 2, 3, 4, 5, 6, 99].includes(f.severity_id as number));
  int(f.time, "time");
  assert.ok((f.time as number) > 1e12, "time is epoch milliseconds");
  const md = obj(f.metadata, "metadata");
  assert.match(md.version as string, /^\d+\.\d+\.\d+$/);
  const product = obj(md.product, "metadata.product");
  assert.ok(typeof product.name === "string" || typeof product.uid === "string");
  str(product.vendor_name, "metadata.product.vendor_name");
  const fi = obj(f.finding_info, "finding_info");
  str(fi.uid, "finding_info.uid");
  str(fi.title, "finding_info.title"); // required through 1.3
}

/** Recommended attributes that are present are well formed, and captions agree with ids. */
function checkRecommended(f: O, alert: Alert): void {
  const captions: Record<number, string> = {
    0: "Unknown",
    1: "Informational",
    2: "Low",
    3: "Medium",
    4: "High",
    5: "Critical",
    6: "Fatal",
    99: "Other",
  };
  assert.equal(f.severity, captions[f.severity_id as number]);
  assert.equal(f.class_name, "Detection Finding");
  assert.equal(f.category_name, "Findings");
  assert.equal(f.activity_name, "Create");
  assert.equal(f.type_name, "Detection Finding: Create");
  assert.ok([0, 1, 2, 3, 4, 5, 6, 99].includes(f.status_id as number));
  assert.equal(f.status, "New");
  assert.equal(f.is_alert, undefined, "is_alert is OCSF 1.4; 1.3.0 carries it in unmapped");
  assert.equal((f.unmapped as O).is_alert, true);
  const fi = obj(f.finding_info, "finding_info");
  const an = obj(fi.analytic, "analytic");
  assert.ok([0, 1, 2, 3, 4, 99].includes(an.type_id as number));
  assert.equal(an.type, "Rule");
  assert.ok(typeof an.uid === "string" || typeof an.name === "string");
  for (const a of (fi.attacks as O[] | undefined) ?? []) {
    assert.ok("tactic" in a || "technique" in a || "sub_technique" in a);
  }
  for (const e of f.evidences as O[]) {
    obj(e.data, "evidence data");
    assert.deepEqual(Object.keys(e), ["data"], "an evidence's name is OCSF 1.5");
  }
  for (const o of f.observables as O[]) {
    str(o.name, "observable name");
    int(o.type_id, "observable type_id");
  }
  assert.equal(fi.uid, alert.id);
  assert.equal((f.metadata as O).uid, alert.id);
  // JSON-clean: no undefined anywhere
  assert.deepEqual(JSON.parse(JSON.stringify(f)), f);
}

Deno.test("toOcsf: every required attribute, typed, for every alert shape and severity", () => {
  for (const alert of [ALERT, MINIMAL, NASTY]) {
    for (const severity of SEVERITIES) {
      const f = toOcsf({ ...alert, severity });
      checkRequired(f);
      checkRecommended(f, alert);
      assert.equal(f.severity_id, OCSF_SEVERITY[severity].id);
    }
  }
});

Deno.test("toOcsf: the fixed alert", () => {
  const f = toOcsf(ALERT);
  assert.equal(f.time, 1777636800123);
  assert.equal(f.type_uid, 200401);
  assert.equal(f.severity_id, 4);
  assert.deepEqual(f.metadata, {
    version: OCSF_VERSION,
    uid: ALERT.id,
    correlation_uid: "req-1",
    tenant_uid: "acme",
    log_name: "latentwatch.alert",
    product: { name: "latentwatch", vendor_name: "latentwatch", version: "0.1.0" },
  });
  const fi = f.finding_info as O;
  assert.deepEqual(fi.types, ["AML.T0051.000 Direct", "AML.T0054 LLM Jailbreak"]);
  assert.deepEqual(fi.analytic, {
    uid: "prompt-injection",
    name: "Prompt injection features active",
    type_id: 1,
    type: "Rule",
    version: "a1b2c3d4",
  });
  assert.deepEqual(fi.attacks, [
    {
      technique: { uid: "AML.T0051", name: "LLM Prompt Injection" },
      sub_technique: { uid: "AML.T0051.000", name: "Direct" },
      tactic: { uid: "AML.TA0005", name: "Execution" },
    },
    {
      technique: { uid: "AML.T0054", name: "LLM Jailbreak" },
      tactic: { uid: "AML.TA0012", name: "Privilege Escalation" },
    },
    {
      technique: { uid: "AML.T0054", name: "LLM Jailbreak" },
      tactic: { uid: "AML.TA0007", name: "Defense Evasion" },
    },
  ]);
  assert.equal(fi.desc, ALERT.description);
  assert.deepEqual(fi.data_sources, ["sae:res12"]);
  assert.deepEqual((f.evidences as O[])[1], {
    data: {
      request_id: "req-1",
      position: 13,
      token_id: 41,
      text: " previous",
      sae: "res12",
      index: 1234,
      label: "instruction override",
      value: 4.5,
    },
  });
  const u = f.unmapped as O;
  assert.deepEqual(u.trace, {
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    span_id: "00f067aa0ba902b7",
    sampled: true,
    traceparent: ALERT.traceparent,
  });
  assert.deepEqual(u.tokens, { start: 12, end: 14, count: 2, text: "Ignore previous" });
  assert.deepEqual(u.steer, ALERT.steer);
  assert.deepEqual(u.probes, ALERT.probes);
  assert.deepEqual(u.latents, ALERT.latents);
  assert.equal(u.tenant, "acme");
  assert.deepEqual(u.evidences, [{ name: "token 12" }, { name: "token 13" }]);
  assert.deepEqual(f.observables, [
    { name: "resources.uid", type_id: 10, type: "Resource UID", value: "gemma-2-2b" },
    { name: "metadata.correlation_uid", type_id: 99, type: "Other", value: "req-1" },
    { name: "metadata.tenant_uid", type_id: 99, type: "Other", value: "acme" },
  ]);
});

Deno.test("toOcsf: without a tenant, no tenant_uid and no tenant observable", () => {
  const f = toOcsf(MINIMAL);
  assert.equal((f.metadata as O).tenant_uid, undefined);
  assert.deepEqual((f.observables as O[]).map((o) => o.name), [
    "resources.uid",
    "metadata.correlation_uid",
  ]);
});

Deno.test("toOcsf: no ATLAS tag, no attacks; a probe signal names its source", () => {
  const f = toOcsf({ ...MINIMAL, latent: { ...MINIMAL.latent, signal: "probe" } });
  const fi = f.finding_info as O;
  assert.equal(fi.attacks, undefined);
  assert.deepEqual(fi.types, ["latentwatch.alert"]);
  assert.deepEqual(fi.data_sources, ["probe:s"]);
  assert.equal(((f.evidences as O[])[0].data as O).probe, "s");
});

Deno.test("toOcsf: an ATLAS id outside the catalogue maps with its id only", () => {
  const fi = toOcsf({ ...MINIMAL, tags: ["AML.T0999.001"] }).finding_info as O;
  assert.deepEqual(fi.attacks, [{
    technique: { uid: "AML.T0999" },
    sub_technique: { uid: "AML.T0999.001" },
  }]);
  assert.deepEqual(fi.types, ["AML.T0999.001"]);
});
