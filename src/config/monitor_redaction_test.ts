import assert from "node:assert/strict";
import { ConfigError, formatIssue } from "./errors.ts";
import { parseMonitorConfig } from "./monitor.ts";

const MINIMAL = [
  "monitor: demo", //                 1
  "model: sim-gpt", //                2
  "hook: blocks.6.hook_resid_post", // 3
  "saes: [{id: r, path: ./sae}]", //  4
  "policies: [./p.yaml]", //          5
  "",
].join("\n");

function problems(text: string): string[] {
  try {
    parseMonitorConfig(text, "/srv/m.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

Deno.test("monitor redaction: default none, no key; record follows the default", () => {
  const cfg = parseMonitorConfig(MINIMAL + "record:\n  path: t.trace\n", "/srv/m.yaml");
  assert.deepEqual(cfg.redaction, { default: "none" });
  assert.equal(cfg.record?.redact, "none");
});

Deno.test("monitor redaction: default, hash key variable, record and sink settings", () => {
  const text = MINIMAL + [
    "redaction:", //                   6
    "  default: hash", //              7
    "  hash_key_env: LW_REDACT_KEY", // 8
    "record:", //                      9
    "  path: t.trace", //              10
    "sinks:", //                       11
    "  - type: stdout", //             12
    "    redact: tokens", //           13
    "  - type: file", //               14
    "    path: a.jsonl", //            15
    "",
  ].join("\n");
  const cfg = parseMonitorConfig(text, "/srv/m.yaml");
  assert.deepEqual(cfg.redaction, { default: "hash", hashKeyEnv: "LW_REDACT_KEY" });
  assert.equal(cfg.record?.redact, "hash", "record takes the monitor default");
  assert.equal(cfg.sinks[0].redact, "tokens");
  assert.equal(cfg.sinks[1].redact, undefined, "a sink without redact adds nothing");
  const own = parseMonitorConfig(
    MINIMAL + "redaction: {default: hash}\nrecord: {path: t.trace, redact: tokens}\n",
    "/srv/m.yaml",
  );
  assert.equal(own.record?.redact, "tokens");
});

Deno.test("monitor redaction: bad values are named at file:line:col", () => {
  assert.deepEqual(
    problems(MINIMAL + "redaction:\n  default: secret\n"),
    ['/srv/m.yaml:7:12: expected one of none, hash, tokens, found the string "secret"'],
  );
  assert.deepEqual(
    problems(MINIMAL + "redaction:\n  hash_key_env: 'not a name'\n"),
    [
      "/srv/m.yaml:7:17: expected the name of an environment variable holding the hash key, " +
      'found the string "not a name"',
    ],
  );
  assert.deepEqual(
    problems(MINIMAL + "sinks:\n  - type: stdout\n    redact: hashed\n"),
    ['/srv/m.yaml:8:13: expected one of none, hash, tokens, found the string "hashed"'],
  );
  assert.deepEqual(
    problems(MINIMAL + "record:\n  path: t\n  redact: yes\n"),
    ['/srv/m.yaml:8:11: expected one of none, hash, tokens, found the string "yes"'],
  );
});
