import assert from "node:assert/strict";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import { ConfigError } from "./errors.ts";
import { parsePolicyFileDef, policyFileDefFromSource, validRulesOf } from "./policy_file.ts";
import { atlasTagProblem } from "./policy_file_schema.ts";
import { parseYamlSource } from "./yaml_source.ts";

const F = "p.yaml";
const at = (line: number, col: number) => ({ file: F, line, col });

/** The issues of parsing `text`, as `line:col: reason`. */
function problems(text: string): string[] {
  try {
    parsePolicyFileDef(text, F);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.line}:${i.col}: ${i.reason}`);
  }
  throw new Error("expected the file to be invalid");
}

/** A v2 file with one rule whose `when` is `when` (a flow mapping on line 6). */
function oneRule(when: string, extra = ""): string {
  return [
    "version: 2", //                  1
    "rules:", //                      2
    "  - id: r", //                   3
    "    title: R", //                4
    "    severity: low", //           5
    `    when: ${when}`, //           6  value at col 11
    extra,
  ].join("\n");
}

const EXAMPLE = [
  "version: 2", //                                                                        1
  "lists:", //                                                                            2
  "  - list: redteam_tenants", //                                                         3
  "    items: [internal-redteam, eval-harness]", //                                       4
  "macros:", //                                                                           5
  "  - macro: injection_signal", //                                                       6
  "    when:", //                                                                         7
  "      any:", //                                                                        8
  "        - { sae: res12, latent: 4123, pool: { rolling_mean_max: 8 }, above: 3.0 }", // 9
  '        - { sae: res12, label: "prompt injection", above: 5 }', //                     10
  "rules:", //                                                                            11
  "  - id: prompt-injection", //                                                          12
  "    title: Prompt injection in the context", //                                        13
  "    severity: high", //                                                                14
  "    tags: [AML.T0051.000, prompt-injection]", //                                       15
  "    scope: prompt", //                                                                 16
  `    description: "latent {label} reached {value} on '{text}' (request {request_id})"`, // 17
  "    when:", //                                                                         18
  "      all:", //                                                                        19
  "        - macro: injection_signal", //                                                 20
  "        - not: { probe: refusal, above: 0.8 }", //                                     21
  "    exceptions:", //                                                                   22
  "      - { tenant: redteam_tenants }", //                                               23
  "    actions:", //                                                                      24
  "      - alert", //                                                                     25
  "      - steer: { clamp: { sae: res12, latent: 4123, value: 0 } }", //                  26
  "    suppress: { tokens: 64 }", //                                                      27
  '    dedup_key: "{request_id}"', //                                                     28
  "    rate_limit: { alerts: 100, per_seconds: 60 }", //                                  29
  "",
].join("\n");

Deno.test("v2: the full example becomes the AST, every source at its line and column", () => {
  const def = parsePolicyFileDef(EXAMPLE, F);
  const expected: PolicyFileDef = {
    file: F,
    version: 2,
    lists: [{
      name: "redteam_tenants",
      items: ["internal-redteam", "eval-harness"],
      source: at(3, 5),
    }],
    macros: [{
      name: "injection_signal",
      source: at(6, 5),
      condition: {
        kind: "any",
        source: at(8, 7),
        of: [
          {
            kind: "test",
            signal: { kind: "latent", sae: "res12", index: 4123 },
            pool: { kind: "rolling_mean_max", window: 8 },
            op: "above",
            threshold: 3,
            source: at(9, 11),
          },
          {
            kind: "test",
            signal: { kind: "label", sae: "res12", label: "prompt injection" },
            pool: { kind: "token" },
            op: "above",
            threshold: 5,
            source: at(10, 11),
          },
        ],
      },
    }],
    rules: [{
      id: "prompt-injection",
      title: "Prompt injection in the context",
      severity: "high",
      description: "latent {label} reached {value} on '{text}' (request {request_id})",
      tags: ["AML.T0051.000", "prompt-injection"],
      scope: "prompt",
      condition: {
        kind: "all",
        source: at(19, 7),
        of: [
          { kind: "macro", name: "injection_signal", source: at(20, 11) },
          {
            kind: "not",
            source: at(21, 11),
            of: {
              kind: "test",
              signal: { kind: "probe", probe: "refusal", index: 0 },
              pool: { kind: "token" },
              op: "above",
              threshold: 0.8,
              source: at(21, 16),
            },
          },
        ],
      },
      exceptions: [{ tenant: { list: "redteam_tenants" }, source: at(23, 9) }],
      actions: [
        { kind: "alert" },
        { kind: "steer", steer: { kind: "clamp", sae: "res12", latent: 4123, value: 0 } },
      ],
      throttle: {
        suppress: { kind: "tokens", n: 64 },
        dedupKey: "{request_id}",
        rateLimit: { alerts: 100, seconds: 60 },
      },
      enabled: true,
      source: at(12, 5),
    }],
  };
  assert.deepEqual(def, expected);
});

Deno.test("v2: defaults: scope both, alert, request suppression, {request_id}, no tags, enabled", () => {
  const [r] = parsePolicyFileDef(oneRule("{ sae: s, latent: 1, above: 2 }"), F).rules;
  assert.equal(r.scope, "both");
  assert.deepEqual(r.actions, [{ kind: "alert" }]);
  assert.deepEqual(r.throttle, { suppress: { kind: "request" }, dedupKey: "{request_id}" });
  assert.deepEqual(r.tags, []);
  assert.deepEqual(r.exceptions, []);
  assert.equal(r.enabled, true);
  assert.equal(r.description, undefined);
  // a file of lists and macros only is valid (a shared library of names)
  const lib = parsePolicyFileDef("version: 2\nlists: [{ list: l, items: [1, 2] }]\n", F);
  assert.deepEqual(lib.rules, []);
  assert.deepEqual(lib.lists[0].items, [1, 2]);
});

Deno.test("v2: every pooling shorthand", () => {
  const cases: [string, unknown][] = [
    ["token", { kind: "token" }],
    ["{ max: 4 }", { kind: "max", window: 4 }],
    ["{ mean: 16 }", { kind: "mean", window: 16 }],
    ["{ rolling_mean_max: 8 }", { kind: "rolling_mean_max", window: 8 }],
    ["{ ema: { half_life: 2.5 } }", { kind: "ema", halfLife: 2.5 }],
    ["{ count: { window: 32, above: 1.5 } }", { kind: "count", window: 32, above: 1.5 }],
  ];
  for (const [yaml, pool] of cases) {
    const [r] = parsePolicyFileDef(oneRule(`{ sae: s, latent: 0, pool: ${yaml}, above: 1 }`), F)
      .rules;
    assert.deepEqual((r.condition as { pool: unknown }).pool, pool, yaml);
  }
});

Deno.test("v2: signals: latent, label, latents (literal or list), probe with score; below", () => {
  const sig = (when: string) => {
    const [r] = parsePolicyFileDef(oneRule(when), F).rules;
    const c = r.condition as { signal: unknown; op: string; threshold: number };
    return [c.signal, c.op, c.threshold];
  };
  assert.deepEqual(sig("{ sae: s, latent: 3, above: 1 }"), [
    { kind: "latent", sae: "s", index: 3 },
    "above",
    1,
  ]);
  assert.deepEqual(sig("{ sae: s, label: ' French text ', above: 1 }"), [
    { kind: "label", sae: "s", label: "French text" },
    "above",
    1,
  ]);
  assert.deepEqual(sig("{ sae: s, latents: [1, 2], above: 1 }")[0], {
    kind: "latents",
    sae: "s",
    indices: [1, 2],
  });
  assert.deepEqual(sig("{ sae: s, latents: my_list, above: 1 }")[0], {
    kind: "latents",
    sae: "s",
    indices: { list: "my_list" },
  });
  assert.deepEqual(sig("{ probe: p, score: 2, below: -0.5 }"), [
    { kind: "probe", probe: "p", index: 2 },
    "below",
    -0.5,
  ]);
});

Deno.test("v2: actions, suppression, exceptions, enabled", () => {
  const rule = (extra: string) =>
    parsePolicyFileDef(oneRule("{ sae: s, latent: 1, above: 2 }", extra), F).rules[0];
  const steer = (s: string) =>
    (rule(`    actions: [{ steer: ${s} }]`).actions[0] as { steer: unknown }).steer;
  assert.deepEqual(steer("abort"), { kind: "abort" });
  assert.deepEqual(steer("{ abort: { reason: stop } }"), { kind: "abort", reason: "stop" });
  assert.deepEqual(steer("{ ablate: { sae: s, latent: 3 } }"), {
    kind: "ablate",
    sae: "s",
    latent: 3,
  });
  assert.deepEqual(steer("{ add: { sae: s, latent: 3, scale: -2 } }"), {
    kind: "add",
    scale: -2,
    direction: { sae: "s", latent: 3 },
  });
  assert.deepEqual(steer("{ add: { vector: [0.5, 1], scale: 1 } }"), {
    kind: "add",
    scale: 1,
    direction: { vector: [0.5, 1] },
  });
  assert.deepEqual(steer("{ cap: { sae: s, latent: 3, max: 4 } }"), {
    kind: "cap",
    max: 4,
    direction: { sae: "s", latent: 3 },
  });
  const suppress = (s: string) => rule(`    suppress: ${s}`).throttle.suppress;
  assert.deepEqual(suppress("none"), { kind: "none" });
  assert.deepEqual(suppress("request"), { kind: "request" });
  assert.deepEqual(suppress("{ seconds: 1.5 }"), { kind: "seconds", s: 1.5 });
  const ex = rule(
    "    exceptions:\n      - { name: canary, model: [m1, m2], metadata: { channel: [sandbox], team: ops } }",
  ).exceptions[0];
  assert.deepEqual(ex, {
    name: "canary",
    model: ["m1", "m2"],
    metadata: { channel: ["sandbox"], team: { list: "ops" } },
    source: at(8, 9),
  });
  assert.equal(rule("    enabled: false").enabled, false);
  assert.deepEqual(rule("    actions: []").actions, []);
});

Deno.test("v1 files are v2 files with one per-token test, alerting on every frame", () => {
  const def = parsePolicyFileDef(
    [
      "version: 1", //                                       1
      "rules:", //                                           2
      "  - id: a", //                                        3
      "    title: A", //                                     4
      "    severity: high", //                               5
      "    description: d", //                               6
      "    when: { sae: res, latent: 4, above: 1.5 }", //    7
      "  - id: b", //                                        8
      "    title: B", //                                     9
      "    severity: low", //                                10
      "    when: { probe: pr, score: 1, above: -0.5 }", //   11
      "",
    ].join("\n"),
    F,
  );
  assert.equal(def.version, 1);
  assert.deepEqual(def.rules[0], {
    id: "a",
    title: "A",
    severity: "high",
    description: "d",
    tags: [],
    scope: "both",
    condition: {
      kind: "test",
      signal: { kind: "latent", sae: "res", index: 4 },
      pool: { kind: "token" },
      op: "above",
      threshold: 1.5,
      source: at(7, 11),
    },
    exceptions: [],
    actions: [{ kind: "alert" }],
    throttle: { suppress: { kind: "none" }, dedupKey: "{request_id}" },
    enabled: true,
    source: at(3, 5),
  });
  assert.deepEqual((def.rules[1].condition as { signal: unknown }).signal, {
    kind: "probe",
    probe: "pr",
    index: 1,
  });
  // v1 keeps its own rules: v2 keys are unknown there
  assert.deepEqual(
    problems(
      "version: 1\nrules:\n  - id: a\n    title: A\n    severity: low\n" +
        "    scope: prompt\n    when: { sae: s, latent: 0, above: 1 }\n",
    ),
    [
      "6:5: unknown key 'scope'; expected one of: id, title, severity, description, when",
    ],
  );
});

Deno.test("errors: versions and the root", () => {
  assert.deepEqual(problems("version: 3\nrules: []\n"), [
    "1:10: expected version: 1 or 2 (the policy file formats this latentwatch reads), found 3",
  ]);
  assert.deepEqual(problems("rules: []\n"), [
    "1:1: missing required key 'version' (version: 1 or 2 (the policy file formats this " +
    "latentwatch reads))",
  ]);
  assert.deepEqual(problems("- rule: a\n"), [
    "1:1: expected a mapping with 'version' and 'rules', found a list of 1 item(s)",
  ]);
  assert.deepEqual(problems(""), [
    "1:1: expected a mapping with 'version' and 'rules', found an empty file",
  ]);
});

Deno.test("errors: conditions, pooling, actions, suppression at the exact line:col", () => {
  const text = [
    "version: 2", //                                                              1
    "rules:", //                                                                  2
    "  - id: x", //                                                               3
    "    title: X", //                                                            4
    "    severity: high", //                                                      5
    "    when:", //                                                               6
    "      all:", //                                                              7
    "        - { sae: res12, latent: -1, pool: { maxx: 8 }, above: 3.0 }", //     8  -1 @33, { @43
    "        - { probe: p, latent: 3, above: 1, below: 2 }", //                   9  3 @31, 2 @51
    "        - { sae: r }", //                                                    10 { @11
    "        - { nott: 1 }", //                                                   11 { @11
    "        - 5", //                                                             12 5 @11
    "    actions: [alrt, { steer: { add: { sae: r, scale: 1, vector: [1] } } }]", // 13 alrt @15, [1] @65
    "    suppress: forever", //                                                   14 @15
    "    tags: [AML.T0051, two words]", //                                        15 two words @23
    "",
  ].join("\n");
  const pool = "expected a pooling: token, {max: N}, {mean: N}, {rolling_mean_max: N}, " +
    "{ema: {half_life: H}} or {count: {window: N, above: X}}";
  const cond = "expected a condition: a signal test ({sae, latent, above} or {probe, above}), " +
    "{all: [...]}, {any: [...]}, {not: ...} or {macro: name}";
  assert.deepEqual(problems(text), [
    "8:33: expected an integer latent index ≥ 0, found -1",
    `8:43: ${pool}, found a mapping with key(s) 'maxx' (did you mean 'max'?)`,
    "9:31: expected 'latent' only with 'sae'; a probe's score is chosen with 'score'",
    "9:51: expected 'above' or 'below', found both",
    "10:11: expected 'latent', 'label', 'latents' or 'family' with 'sae' (which latent to read)",
    "10:11: expected a threshold: 'above: X' or 'below: X'",
    `11:11: ${cond}, found a mapping with key(s) 'nott' (did you mean 'not'?)`,
    `12:11: ${cond}, found 5`,
    '13:15: expected an action: alert or {steer: ...}, found the string "alrt"',
    "13:65: add: expected a latent ('sae' and 'latent') or a 'vector', found both",
    '14:15: expected request, none, {tokens: N} or {seconds: S}, found the string "forever"',
    "15:23: expected a tag without spaces (e.g. prompt-injection or AML.T0051.000), found the " +
    'string "two words"',
  ]);
});

Deno.test("errors: rules, macros, lists, exceptions, throttling", () => {
  const text = [
    "version: 2", //                                              1
    "lists:", //                                                  2
    "  - list: 9lives", //                                        3  @11
    "    items: [a, { b: 1 }]", //                                4  { @16
    "macros:", //                                                 5
    "  - macro: m", //                                            6  mapping @5
    "rules:", //                                                  7
    "  - id: Bad_Id", //                                          8  @9
    "    title: ''", //                                           9  @12
    "    severity: warning", //                                   10 @15
    "    scope: decode", //                                       11 @12
    "    when: { sae: s, latent: 1, pool: { max: 0 }, above: 1 }", // 12 0 @45
    "    exceptions: [{ name: nobody }]", //                      13 { @18
    "    rate_limit: { alerts: 0, per_seconds: -1 }", //          14 0 @27, -1 @43
    "    suppress: { tokens: 1.5 }", //                           15 @25
    "    dedup_key: ''", //                                       16 @16
    "    priority: 3", //                                         17 key @5
    "  - id: Bad_Id", //                                          18
    "    title: again", //                                        19
    "    severity: low", //                                       20
    "    when: { all: [] }", //                                   21 [] @18
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    "3:11: expected a list: a name of letters, digits, '_', '.' or '-' starting with a letter " +
    "or '_', found the string \"9lives\"",
    "4:16: expected a string or a number, found a mapping with key(s) 'b'",
    "6:5: missing required key 'when' (expected a condition: a signal test ({sae, latent, " +
    "above} or {probe, above}), {all: [...]}, {any: [...]}, {not: ...} or {macro: name})",
    "8:9: expected a rule id of lowercase letters, digits, '.', '_' or '-' ([a-z0-9][a-z0-9._-]*)" +
    ', found the string "Bad_Id"',
    '9:12: expected a non-empty string, found the string ""',
    '10:15: expected one of info, low, medium, high, critical, found the string "warning"',
    '11:12: expected one of prompt, generation, both, found the string "decode"',
    "12:45: expected a window of whole tokens ≥ 1, found 0",
    "13:18: expected at least one of 'tenant', 'model' or 'metadata' in an exception (an " +
    "exception without them would match every request)",
    "14:27: expected a whole number of alerts ≥ 1, found 0",
    "14:43: expected a number of seconds > 0, found -1",
    "15:25: expected a whole number of tokens ≥ 1, found 1.5",
    '16:16: expected a non-empty string, found the string ""',
    "17:5: unknown key 'priority'; expected one of: id, title, severity, description, tags, " +
    "scope, enabled, when, exceptions, actions, suppress, dedup_key, rate_limit, redact",
    "18:9: duplicate rule id 'Bad_Id': expected ids to be unique, found it already defined at " +
    "line 8",
    "18:9: expected a rule id of lowercase letters, digits, '.', '_' or '-' ([a-z0-9][a-z0-9._-]*)" +
    ', found the string "Bad_Id"',
    "21:18: expected a list of at least one condition under 'all', found a list of 0 item(s)",
  ]);
});

Deno.test("ATLAS tags: well-formed ids pass, look-alikes warn at the tag with a fix", () => {
  assert.equal(atlasTagProblem("AML.T0051"), undefined);
  assert.equal(atlasTagProblem("AML.T0051.000"), undefined);
  assert.equal(atlasTagProblem("AML.TA0005"), undefined);
  assert.equal(atlasTagProblem("prompt-injection"), undefined);
  assert.equal(atlasTagProblem("amlx"), undefined);
  assert.match(atlasTagProblem("aml.t0051")!, /did you mean 'AML\.T0051'\?$/);
  assert.match(atlasTagProblem("atlas.aml.t0054")!, /did you mean 'AML\.T0054'\?$/);
  assert.match(atlasTagProblem("AML.T51")!, /^tag 'AML\.T51' looks like a MITRE ATLAS id/);
  assert.doesNotMatch(atlasTagProblem("AML.T51")!, /did you mean/);
  const { warnings } = policyFileDefFromSource(
    parseYamlSource(oneRule("{ sae: s, latent: 1, above: 2 }", "    tags: [ok, AML.T0051.0]"), F),
  );
  assert.deepEqual(warnings.map((w) => `${w.line}:${w.col}`), ["7:16"]);
});

Deno.test("validRulesOf: the rules that validate, at their own lines; none when an error is outside the rules", () => {
  const text = [
    "version: 2", //                                       1
    "rules:", //                                           2
    "  - id: bad", //                                      3
    "    title: Bad", //                                   4
    "    severity: urgent", //                             5
    "    when: { sae: res, latent: 1, above: 1 }", //      6
    "  - id: ok", //                                       7
    "    title: Ok", //                                    8
    "    severity: high", //                               9
    "    when: { sae: res, latent: 2, above: 1 }", //      10
    "",
  ].join("\n");
  const kept = validRulesOf(parseYamlSource(text, "p.yaml"));
  assert.deepEqual(kept?.def.rules.map((r) => [r.id, r.source.line]), [["ok", 7]]);
  assert.equal(validRulesOf(parseYamlSource(`${text}extra: 1\n`, "p.yaml")), undefined);
  assert.equal(
    validRulesOf(parseYamlSource(text.replace("severity: high", "severity: nope"), "p.yaml")),
    undefined,
  );
});
