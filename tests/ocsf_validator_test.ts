/**
 * The OCSF validator itself: hand-built valid Detection Findings pass, and
 * each deliberately broken one is rejected with one error at the exact path.
 */
import assert from "node:assert/strict";
import { loadOcsfSchema, OcsfSchemaError } from "./helpers/ocsf_schema.ts";
import { formatIssues, type OcsfReport, validateOcsf } from "./helpers/ocsf_validator.ts";

const schema = await loadOcsfSchema(new URL("./testdata/ocsf-1.3.0/", import.meta.url));

type O = Record<string, unknown>;

/** Only what OCSF 1.3.0 requires of a Detection Finding. */
const MINIMAL: O = {
  class_uid: 2004,
  category_uid: 2,
  activity_id: 1,
  type_uid: 200401,
  severity_id: 1,
  time: 1777636800000,
  metadata: { version: "1.3.0", product: { name: "p", vendor_name: "v" } },
  finding_info: { uid: "f-1", title: "t" },
};

/** Captions, objects three levels down, profiles (cloud, host, datetime) and their attributes. */
const RICH: O = {
  ...MINIMAL,
  class_name: "Detection Finding",
  category_name: "Findings",
  activity_id: 2,
  activity_name: "Update",
  type_uid: 200402,
  type_name: "Detection Finding: Update",
  severity_id: 99,
  severity: "Source-specific",
  status_id: 3,
  status: "Suppressed",
  confidence_id: 2,
  confidence_score: 70,
  time_dt: "2026-05-01T12:00:00Z",
  count: 3,
  message: "m",
  metadata: {
    version: "1.3.0",
    profiles: ["cloud", "host", "datetime"],
    tenant_uid: "acme",
    labels: ["a", "b"],
    product: { uid: "p-1", vendor_name: "v", version: "1" },
  },
  cloud: { provider: "AWS", region: "eu-west-1" },
  device: { type_id: 1, type: "Server", hostname: "h1", ip: "10.0.0.1" },
  finding_info: {
    uid: "f-1",
    title: "t",
    types: ["x"],
    analytic: { type_id: 4, type: "Learning (ML/DL)", name: "a" },
    attacks: [{ technique: { uid: "T1059", name: "Command and Scripting Interpreter" } }],
    created_time: 1777636800000,
  },
  resources: [{ uid: "r", type: "llm_model", region: "eu-west-1" }],
  observables: [
    { name: "device.hostname", type_id: 1, type: "Hostname", value: "h1" },
    { name: "resources.uid", type_id: 10, type: "Resource UID", value: "r" },
    { name: "metadata.tenant_uid", type_id: 99, type: "Other", value: "acme" },
  ],
  evidences: [{ data: { anything: [1, "two", null] } }],
  unmapped: { free: { form: [null, 1.5, "x"] }, is_alert: true },
};

const valid = (r: OcsfReport) => assert.ok(r.valid, formatIssues(r.errors));

Deno.test("ocsf validator: the schema resolves Detection Finding from the official files", () => {
  const cls = schema.classOf(2004);
  assert.equal(cls?.caption, "Detection Finding");
  assert.deepEqual(Object.keys(cls!.attributes.activity_id.enum!).sort(), [
    "0",
    "1",
    "2",
    "3",
    "99",
  ]);
  assert.equal(cls!.attributes.status_id.enum!["1"].caption, "New"); // finding overrides the dictionary
  assert.equal(cls!.attributes.time.type, "timestamp_t"); // from includes/occurrence.json
  assert.equal(cls!.attributes.cloud.profile, "cloud"); // from profiles/cloud.json
  assert.equal(schema.type("timestamp_t")?.base, "long_t");
  assert.equal(schema.object("product").constraints.at_least_one?.join(), "name,uid"); // _entity
  assert.equal(schema.object("observable").attributes.type_id.enum!["10"].caption, "Resource UID");
});

Deno.test("ocsf validator: hand-built valid events pass", () => {
  valid(validateOcsf(schema, MINIMAL));
  valid(validateOcsf(schema, RICH));
  assert.deepEqual(validateOcsf(schema, MINIMAL).warnings.find((w) => w.path === "message"), {
    path: "message",
    message: "recommended, missing",
  });
});

/** Each broken event: what to change, the one error path, and words its message must carry. */
const BROKEN: [string, (e: O) => void, string, RegExp][] = [
  ["missing required", (e) => delete (e.finding_info as O).uid, "finding_info.uid", /required/],
  [
    "missing nested required",
    (e) => delete (e.metadata as O).version,
    "metadata.version",
    /required/,
  ],
  ["wrong type", (e) => (e.severity_id = "4"), "severity_id", /expected integer_t.*string "4"/],
  ["float for integer", (e) => (e.count = 1.5), "count", /expected integer_t/],
  ["bad enum", (e) => (e.severity_id = 7), "severity_id", /7 is not a value of severity_id/],
  [
    "bad nested enum",
    (e) => ((e.finding_info as O).analytic = { type_id: 42, name: "a" }),
    "finding_info.analytic.type_id",
    /42 is not a value of type_id/,
  ],
  [
    "undefined attribute",
    (e) => (e.is_alert = true),
    "is_alert",
    /not defined by OCSF 1\.3\.0 for detection_finding/,
  ],
  [
    "undefined nested attribute",
    (e) => (e.evidences = [{ name: "n", data: {} }]),
    "evidences[0].name",
    /not defined by OCSF 1\.3\.0 for evidences/,
  ],
  ["bad type_uid", (e) => (e.type_uid = 200402), "type_uid", /expected 200401/],
  [
    "bad type_name",
    (e) => (e.type_name = "Detection Finding: Close"),
    "type_name",
    /expected "Detection Finding: Create"/,
  ],
  ["string timestamp", (e) => (e.time = "2026-05-01T12:00:00Z"), "time", /expected timestamp_t/],
  [
    "string nested timestamp",
    (e) => ((e.finding_info as O).created_time = "1777636800000"),
    "finding_info.created_time",
    /expected timestamp_t/,
  ],
  [
    "caption does not match id",
    (e) => (e.severity = "Low"),
    "severity",
    /"Low" does not match severity_id 1, whose caption is "Informational"/,
  ],
  [
    "wrong class name",
    (e) => (e.class_name = "Security Finding"),
    "class_name",
    /does not match class_uid 2004/,
  ],
  [
    "wrong category",
    (e) => (e.category_uid = 3),
    "category_uid",
    /3 is not a value of category_uid/,
  ],
  ["unknown class", (e) => (e.class_uid = 2099), "class_uid", /no event class of OCSF 1\.3\.0/],
  [
    "observable into unmapped",
    (e) => (e.observables = [{ name: "unmapped.tenant", type_id: 99, value: "a" }]),
    "observables[0].name",
    /'unmapped' is free-form/,
  ],
  [
    "observable names nothing",
    (e) => (e.observables = [{ name: "metadata.tenant", type_id: 99 }]),
    "observables[0].name",
    /'metadata.tenant' is not defined/,
  ],
  [
    "bad observable type",
    (e) => (e.observables = [{ name: "time", type_id: 1000 }]),
    "observables[0].type_id",
    /1000 is not a value of type_id/,
  ],
  [
    "profile attribute without the profile",
    (e) => (e.cloud = { provider: "AWS" }),
    "cloud",
    /belongs to profile 'cloud'/,
  ],
  [
    "unknown profile",
    (e) => ((e.metadata as O).profiles = ["nope"]),
    "metadata.profiles[0]",
    /no profile/,
  ],
  [
    "declares another version",
    (e) => ((e.metadata as O).version = "1.5.0"),
    "metadata.version",
    /declares string "1\.5\.0"/,
  ],
  [
    "product without name or uid",
    (e) => ((e.metadata as O).product = { vendor_name: "v" }),
    "metadata.product",
    /at least one of name, uid/,
  ],
  [
    "array expected",
    (e) => ((e.finding_info as O).types = "x"),
    "finding_info.types",
    /expected an array of string_t/,
  ],
  ["object expected", (e) => (e.metadata = "1.3.0"), "metadata", /expected object metadata/],
  [
    "datetime attribute without the profile",
    (e) => (e.time_dt = "2026-05-01T12:00:00Z"),
    "time_dt",
    /datetime profile is not applied/,
  ],
  [
    "bad datetime",
    (e) => (((e.metadata as O).profiles = ["datetime"]), (e.time_dt = "May 1")),
    "time_dt",
    /expected datetime_t/,
  ],
  ["null value", (e) => (e.message = null), "message", /expected string_t.*null/],
];

Deno.test("ocsf validator: each broken event is rejected with one error at its path", () => {
  for (const [what, breakIt, path, message] of BROKEN) {
    const e = structuredClone(MINIMAL);
    breakIt(e);
    const r = validateOcsf(schema, e);
    assert.equal(r.valid, false, `${what}: rejected`);
    assert.deepEqual(r.errors.map((i) => i.path), [path], `${what}: ${formatIssues(r.errors)}`);
    assert.match(r.errors[0].message, message, what);
  }
});

Deno.test("ocsf validator: unmapped is free-form, and a time in seconds is only a warning", () => {
  const r = validateOcsf(schema, { ...MINIMAL, time: 1777636800, unmapped: { a: { b: [null] } } });
  valid(r);
  assert.deepEqual(r.warnings.filter((w) => w.path === "time").map((w) => w.message), [
    "1777636800 looks like seconds; OCSF timestamps are epoch milliseconds",
  ]);
  assert.equal(
    validateOcsf(schema, []).errors[0].message,
    "an event is a JSON object, got an array",
  );
});

Deno.test("ocsf validator: a schema folder without the files is an OcsfSchemaError with a cause", async () => {
  const err = await loadOcsfSchema(new URL("./testdata/no-such-ocsf/", import.meta.url)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(err instanceof OcsfSchemaError);
  assert.match(err.message, /version\.json/);
  assert.ok(err.cause instanceof Deno.errors.NotFound);
});
