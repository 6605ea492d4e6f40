import assert from "node:assert/strict";
import { PolicyEngine } from "../core/policy/engine.ts";
import type { RedactMode } from "../core/redact.ts";
import { toJson } from "../core/render/json.ts";
import { buildAlert } from "./alert.ts";
import { tokenBatch } from "./evaluate.ts";
import { frame, policies, row } from "./testdata/fixtures.ts";

/** One rule firing on tokens 1–2 ("hunter2024", " sk-live-9f"), with `redact` when given. */
function alertFor(ruleRedact: RedactMode | undefined, floor?: RedactMode, hashKey?: string) {
  const set = policies(
    "version: 2\nrules:\n  - id: pw\n    title: password typed\n    severity: high\n" +
      "    description: \"saw '{text}' at {tokens} in {request_id}\"\n" +
      (ruleRedact ? `    redact: ${ruleRedact}\n` : "") +
      "    when: { sae: s, latent: 0, above: 1 }\n",
  );
  const f = { ...frame([[0], [0], [0]]), tokenText: ["my", " hunter2024", " sk-live-9f"] };
  const latents = new Map([["s", [row({}), row({ 0: 3 }), row({ 0: 2 })]]]);
  const [firing] = new PolicyEngine(set).evaluate(tokenBatch(f, 0, latents));
  return buildAlert({
    monitor: "mon",
    frame: f,
    firstRow: 0,
    latents,
    firing,
    policyVersion: set.version,
    time: "2025-01-01T00:00:00.000Z",
    ...(floor ? { redaction: { mode: floor, ...(hashKey ? { hashKey } : {}) } } : {}),
  });
}

async function sha16(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("buildAlert: no redaction anywhere: the text as sent", () => {
  const a = alertFor(undefined);
  assert.equal(a.description, "saw ' hunter2024 sk-live-9f' at 1-2 in r1");
  assert.deepEqual(a.evidence.map((e) => e.text), [" hunter2024", " sk-live-9f"]);
  assert.equal(a.redaction, undefined);
});

Deno.test("buildAlert: the rule's redact re-renders the description and redacts evidence", async () => {
  const t = alertFor("tokens");
  assert.equal(t.description, "saw '[redacted]' at 1-2 in r1");
  assert.deepEqual(t.evidence.map((e) => e.text), ["[redacted]", "[redacted]"]);
  assert.equal(t.redaction, "tokens");
  const h = alertFor("hash");
  assert.equal(h.description, `saw 'sha256:${await sha16(" hunter2024 sk-live-9f")}' at 1-2 in r1`);
  assert.deepEqual(h.evidence.map((e) => e.text), [
    `sha256:${await sha16(" hunter2024")}`,
    `sha256:${await sha16(" sk-live-9f")}`,
  ]);
  for (const a of [t, h]) {
    const bytes = toJson(a);
    assert.ok(!bytes.includes("hunter2024") && !bytes.includes("sk-live-"), bytes);
  }
});

Deno.test("buildAlert: rule and monitor settings combine, the stricter winning", () => {
  const cases: [RedactMode | undefined, RedactMode, string | undefined][] = [
    [undefined, "none", undefined],
    ["none", "hash", "hash"],
    ["hash", "none", "hash"],
    ["hash", "tokens", "tokens"],
    ["tokens", "hash", "tokens"],
    [undefined, "tokens", "tokens"],
  ];
  for (const [rule, floor, want] of cases) {
    assert.equal(alertFor(rule, floor).redaction, want, `rule ${rule}, monitor ${floor}`);
  }
  // the monitor's key keys the hash (of the rule's hash mode too)
  assert.match(alertFor("hash", "none", "k").evidence[0].text!, /^hmac-sha256:[0-9a-f]{16}$/);
});
