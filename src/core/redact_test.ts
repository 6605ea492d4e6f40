import assert from "node:assert/strict";
import type { Alert } from "./alert.ts";
import {
  REDACT_MODES,
  redactAlert,
  REDACTED_MARKER,
  type RedactMode,
  redactText,
  stricterRedaction,
  withDescriptionSource,
} from "./redact.ts";
import { toCef } from "./render/cef.ts";
import { toEcs } from "./render/ecs.ts";
import { toJson } from "./render/json.ts";
import { toOcsf } from "./render/ocsf.ts";
import { toSyslog5424 } from "./render/syslog.ts";
import { ALERT, SECRET, SECRETS } from "./render/test_alert.ts";
import { hmacHex } from "../../tests/helpers/hmac_reference.ts";

/** Reference digests by WebCrypto (the code under test hashes with node:crypto). */
async function sha256Hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `needle`'s UTF-8 bytes occur in `haystack`. */
function bytesContain(haystack: Uint8Array, needle: string): boolean {
  const n = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + n.length <= haystack.length; i++) {
    for (let j = 0; j < n.length; j++) if (haystack[i + j] !== n[j]) continue outer;
    return true;
  }
  return false;
}

/** Every rendering the sinks send, as the bytes that leave. */
const RENDERINGS: Record<string, (a: Alert) => string> = {
  json: toJson,
  cef: (a) => toCef(a, { dvchost: "h" }),
  ecs: (a) => JSON.stringify(toEcs(a)),
  ocsf: (a) => JSON.stringify(toOcsf(a)),
  "syslog json": (a) => toSyslog5424(a, { hostname: "h", appName: "lw", format: "json" }),
  "syslog cef": (a) => toSyslog5424(a, { hostname: "h", appName: "lw", format: "cef" }),
  "syslog ecs": (a) => toSyslog5424(a, { hostname: "h", appName: "lw", format: "ecs" }),
  "syslog ocsf": (a) => toSyslog5424(a, { hostname: "h", appName: "lw", format: "ocsf" }),
};

Deno.test("stricterRedaction: tokens > hash > none, either order", () => {
  const table: [RedactMode, RedactMode, RedactMode][] = [
    ["none", "none", "none"],
    ["none", "hash", "hash"],
    ["none", "tokens", "tokens"],
    ["hash", "hash", "hash"],
    ["hash", "tokens", "tokens"],
    ["tokens", "tokens", "tokens"],
  ];
  for (const [a, b, want] of table) {
    assert.equal(stricterRedaction(a, b), want, `${a} ∨ ${b}`);
    assert.equal(stricterRedaction(b, a), want, `${b} ∨ ${a}`);
  }
});

Deno.test("redactText: marker, SHA-256 prefix, HMAC prefix; stable and equal for equal text", async () => {
  assert.equal(redactText("hunter2024", { mode: "none" }), "hunter2024");
  assert.equal(redactText("hunter2024", { mode: "tokens" }), "[redacted]");
  const plain = redactText("hunter2024", { mode: "hash" });
  assert.equal(plain, `sha256:${(await sha256Hex("hunter2024")).slice(0, 16)}`);
  assert.equal(redactText("hunter2024", { mode: "hash" }), plain);
  assert.notEqual(redactText("hunter2025", { mode: "hash" }), plain);
  const keyed = redactText("hunter2024", { mode: "hash", hashKey: "s3cret-key" });
  assert.equal(keyed, `hmac-sha256:${(await hmacHex("s3cret-key", "hunter2024")).slice(0, 16)}`);
  assert.notEqual(redactText("hunter2024", { mode: "hash", hashKey: "other" }), keyed);
  // non-ASCII text is hashed as UTF-8
  assert.equal(
    redactText("日本", { mode: "hash" }),
    `sha256:${(await sha256Hex("日本")).slice(0, 16)}`,
  );
});

for (const [name, render] of Object.entries(RENDERINGS)) {
  Deno.test(`redactAlert: ${name} bytes hold no secret under tokens and hash, all under none`, () => {
    const verbatim = new TextEncoder().encode(render(redactAlert(SECRET, { mode: "none" })));
    for (const s of SECRETS) assert.ok(bytesContain(verbatim, s), `none keeps ${s}`);
    for (const mode of ["tokens", "hash"] as const) {
      for (const hashKey of [undefined, "k"]) {
        const out = new TextEncoder().encode(render(redactAlert(SECRET, { mode, hashKey })));
        for (const s of SECRETS) assert.ok(!bytesContain(out, s), `${mode} leaks ${s}`);
        // and the fallback for an alert read back from JSON (no template) too
        const parsed = JSON.parse(JSON.stringify(SECRET)) as Alert;
        const back = new TextEncoder().encode(render(redactAlert(parsed, { mode, hashKey })));
        for (const s of SECRETS) assert.ok(!bytesContain(back, s), `${mode} (parsed) leaks ${s}`);
      }
    }
  });
}

Deno.test("redactAlert: evidence and the re-rendered description, by mode", async () => {
  const tokens = redactAlert(SECRET, { mode: "tokens" });
  assert.deepEqual(tokens.evidence.map((e) => e.text), Array(4).fill(REDACTED_MARKER));
  assert.equal(tokens.description, "saw '[redacted]' on tokens 3-6");
  assert.equal(tokens.redaction, "tokens");
  const hash = redactAlert(SECRET, { mode: "hash" });
  const want = await Promise.all(
    [" hunter2024", " sk", "-live-", "9f8e"].map(async (t) =>
      `sha256:${(await sha256Hex(t)).slice(0, 16)}`
    ),
  );
  assert.deepEqual(hash.evidence.map((e) => e.text), want);
  const joined = (await sha256Hex(" hunter2024 sk-live-9f8e")).slice(0, 16);
  assert.equal(hash.description, `saw 'sha256:${joined}' on tokens 3-6`);
  assert.equal(hash.redaction, "hash");
  // everything else as it was; the input untouched
  const rest = (a: Alert) =>
    JSON.parse(JSON.stringify({ ...a, evidence: [], description: "", redaction: undefined }));
  assert.deepEqual(rest(hash), rest(SECRET));
  assert.equal(SECRET.evidence[0].text, " hunter2024");
  assert.equal(SECRET.redaction, undefined);
});

Deno.test("redactAlert: re-renders the template rather than replacing text in it", () => {
  // the token text "a" also occurs in the template's own words
  const alert = withDescriptionSource({
    ...ALERT,
    description: "a rule saw a",
    evidence: [{ position: 0, value: 1, text: "a" }],
  }, { template: "a rule saw {text}", fields: { text: "a" } });
  assert.equal(redactAlert(alert, { mode: "tokens" }).description, "a rule saw [redacted]");
  // read back from JSON there is no template: every occurrence goes (over-redacts, never leaks)
  const parsed = JSON.parse(JSON.stringify(alert)) as Alert;
  assert.equal(
    redactAlert(parsed, { mode: "tokens" }).description,
    "[redacted] rule s[redacted]w [redacted]",
  );
  // a template without {text} is kept as rendered
  const plain = withDescriptionSource({ ...ALERT, description: "fixed" }, {
    template: "fixed",
    fields: { text: "Ignore previous" },
  });
  assert.equal(redactAlert(plain, { mode: "tokens" }).description, "fixed");
});

Deno.test("redactAlert: settings combine, stricter wins, and nothing is redacted twice", () => {
  const hashed = redactAlert(SECRET, { mode: "hash" });
  assert.equal(redactAlert(hashed, { mode: "none" }), hashed);
  assert.equal(redactAlert(hashed, { mode: "hash" }), hashed, "a hash is not hashed again");
  const tokens = redactAlert(hashed, { mode: "tokens" });
  assert.equal(tokens.redaction, "tokens");
  assert.equal(tokens.description, "saw '[redacted]' on tokens 3-6");
  assert.deepEqual(tokens.evidence.map((e) => e.text), Array(4).fill(REDACTED_MARKER));
  assert.equal(redactAlert(tokens, { mode: "hash" }), tokens);
  // none on an alert never redacted: the very same object
  assert.equal(redactAlert(SECRET, { mode: "none" }), SECRET);
  // evidence without text stays without
  const bare = redactAlert({ ...ALERT, evidence: [{ position: 0, value: 1 }] }, { mode: "hash" });
  assert.deepEqual(bare.evidence, [{ position: 0, value: 1 }]);
  for (const m of REDACT_MODES) assert.ok(typeof m === "string");
});
