import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import { parseMonitorConfig } from "../config/monitor.ts";
import { DEMO_PROMPTS } from "../demo/demo.ts";
import { buildDemoSae, SimulatedModel } from "../demo/simulator.ts";
import { writeSimulatedTrace } from "../demo/simulated_trace.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import type { RedactOptions } from "../core/redact.ts";
import { loadOfflineMonitor } from "./offline.ts";
import { type ReplayFiring, replayTrace } from "./replay.ts";

const HOOK = "blocks.6.hook_resid_post";
// the simulator's latent 1 is e-mail addresses, 2 credentials (its ground truth)
const POLICY = `version: 2
rules:
  - id: email
    title: e-mail address
    severity: medium
    description: "address {text} in {request_id}"
    when: { sae: res, latent: 1, above: 2 }
  - id: credential
    title: credential typed
    severity: high
    description: "credential {text} in {request_id}"
    dedup_key: "{text}"
    redact: tokens
    when: { sae: res, latent: 2, above: 2 }
`;

/** Replay the demo prompts with `POLICY`; the firings and alerts, printed as replay prints them. */
async function replay(redaction?: RedactOptions) {
  const sim = new SimulatedModel({ dModel: 32, seed: 7 });
  const dir = await Deno.makeTempDir();
  try {
    await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, 16));
    await Deno.writeTextFile(`${dir}/p.yaml`, POLICY);
    const yaml = `monitor: t\nmodel: sim-gpt\nhook: ${HOOK}\nsaes: [{id: res, path: ./sae}]\n` +
      `policies: [./p.yaml]\n`;
    await Deno.writeTextFile(`${dir}/monitor.yaml`, yaml);
    await writeSimulatedTrace(`${dir}/t.trace`, sim, DEMO_PROMPTS, {});
    const m = await loadOfflineMonitor(parseMonitorConfig(yaml, `${dir}/monitor.yaml`));
    const firings: ReplayFiring[] = [];
    const alerts: Alert[] = [];
    await replayTrace(m, `${dir}/t.trace`, {
      onFiring: (f) => firings.push(f),
      onAlert: (a) => alerts.push(a),
      ...(redaction ? { redaction } : {}),
    });
    await m.close();
    const out = (id: string) => {
      const fs = firings.filter((f) => f.rule.def.id === id);
      const printed = JSON.stringify(fs.map((f) => ({
        text: f.text,
        description: f.description,
        dedupKey: f.dedupKey,
        alert: f.alertRecord,
      })));
      return {
        firings: fs,
        printed,
        alerts: JSON.stringify(alerts.filter((a) => a.policy.id === id)),
      };
    };
    return { email: out("email"), credential: out("credential") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("replay honours a rule's redact: text, description, dedup key and alerts", async () => {
  const { email, credential } = await replay();
  assert.ok(credential.firings.length >= 1 && email.firings.length >= 1);
  for (const f of credential.firings) {
    assert.ok(f.text!.every((t) => t === "[redacted]"));
    assert.equal(f.description, `credential [redacted] in ${f.requestId}`);
    assert.equal(f.dedupKey, "[redacted]");
  }
  for (const s of [credential.printed, credential.alerts]) assert.ok(!s.includes("hunter2024"), s);
  // the e-mail rule says nothing: its text stays
  assert.ok(email.printed.includes("alice"), email.printed);
  assert.ok(email.alerts.includes("alice"));
});

Deno.test("replay: the monitor's redaction applies to every rule, the stricter winning", async () => {
  const { email, credential } = await replay({ mode: "hash" });
  for (const s of [email.printed, email.alerts]) {
    assert.ok(!s.includes("alice"), s);
    assert.match(s, /sha256:[0-9a-f]{16}/);
  }
  // tokens (the rule) beats hash (the monitor)
  for (const f of credential.firings) assert.ok(f.text!.every((t) => t === "[redacted]"));
  assert.ok(!credential.alerts.includes("sha256:") && credential.alerts.includes("[redacted]"));
});
