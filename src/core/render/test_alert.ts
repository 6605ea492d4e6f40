/**
 * Fixed alerts the rendering tests share: a typical one, a minimal one,
 * one full of adversarial strings, and every kind of alert by kind.
 *
 * @module
 */
import type { Alert } from "../alert.ts";
import { SEVERITIES } from "../policy/ast.ts";
import { redactAlert, withDescriptionSource } from "../redact.ts";

/** A typical alert: ATLAS tags, token text, trace context, steering. */
export const ALERT: Alert = {
  schema: "latentwatch.alert/v1",
  id: "5c1f0e7a9b3d4c2e8f6a1b0c9d8e7f60",
  time: "2026-05-01T12:00:00.123Z",
  monitor: "demo",
  policy: { id: "prompt-injection", file: "policies/demo.yaml", line: 7, version: "a1b2c3d4" },
  severity: "high",
  title: "Prompt injection features active",
  description: "prompt-injection latent 1234 at 5.25 on tokens 12-14",
  tags: ["prompt-injection", "AML.T0051.000", "AML.T0054"],
  model: "gemma-2-2b",
  hook: "blocks.12.hook_resid_post",
  requestId: "req-1",
  tenant: "acme",
  meta: { app: "chat" },
  phase: "prefill",
  tokens: { start: 12, end: 14, count: 2 },
  latent: { sae: "res12", index: 1234, threshold: 3, max: 5.25, label: "instruction override" },
  evidence: [
    { position: 12, value: 5.25, tokenId: 40, text: "Ignore" },
    { position: 13, value: 4.5, tokenId: 41, text: " previous" },
  ],
  steer: [{ kind: "clamp", sae: "res12", latent: 1234, value: 0 }],
  traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  latents: [{
    sae: "res12",
    index: 1234,
    label: "instruction override",
    value: 5.25,
    threshold: 3,
  }],
  probes: [{ probe: "jailbreak", index: 0, value: 0.91 }],
};

/**
 * The typical alert with its rule's three conditions listed: the one that
 * completed the rule (max 8), a probe (ema), a guard (below).
 */
export const WITH_CONDITIONS: Alert = {
  ...ALERT,
  conditions: [{
    name: "override",
    sae: "res12",
    index: 1234,
    label: "instruction override",
    pool: { kind: "max", window: 8 },
    op: "above",
    threshold: 3,
    value: 5.25,
    held: true,
    completed: true,
  }, {
    name: "jailbreak.0",
    sae: "jailbreak",
    index: 0,
    signal: "probe",
    pool: { kind: "ema", halfLife: 4 },
    op: "above",
    threshold: 0.5,
    value: 0.91,
    held: true,
  }, {
    name: "quiet",
    sae: "res12",
    index: 7,
    pool: { kind: "token" },
    op: "below",
    threshold: 1,
    value: 0,
    held: true,
  }],
  completedBy: "override",
};

/** Only what every alert has. */
export const MINIMAL: Alert = {
  schema: "latentwatch.alert/v1",
  id: "00000000000000000000000000000001",
  time: "2026-05-01T12:00:00.000Z",
  monitor: "m",
  policy: { id: "r", file: "p.yaml", line: 1 },
  severity: "info",
  title: "t",
  model: "m1",
  hook: "h",
  requestId: "q",
  tokens: { start: 0, end: 1, count: 1 },
  latent: { sae: "s", index: 0, max: 1 },
  evidence: [{ position: 0, value: 1 }],
};

/** Pipes, equals, backslashes, line breaks, quotes, brackets and non-ASCII everywhere strings go. */
export const NASTY: Alert = {
  ...ALERT,
  policy: { id: "rule|with\\pipe", file: "p=q.yaml", line: 3, version: "v=1" },
  severity: "critical",
  title: "Title | with \\ back\nslash = é",
  description: 'a=b\\c|d\r\ne"f]g ü 日本',
  model: "m|=\\",
  hook: 'h]"',
  requestId: 'r"]\\',
  tenant: "tenant = x",
  traceparent: undefined,
};

/** The two secrets {@linkcode SECRET} carries in its token text. */
export const SECRETS = ["hunter2024", "sk-live-"] as const;

/**
 * An alert whose firing tokens hold secrets (a password, an API key split
 * over three tokens), its description rendered from `saw '{text}' on tokens
 * {tokens}` (template and fields attached, as the pipeline attaches them).
 */
export const SECRET: Alert = withDescriptionSource({
  ...ALERT,
  description: "saw ' hunter2024 sk-live-9f8e' on tokens 3-6",
  tokens: { start: 3, end: 7, count: 4 },
  evidence: [
    { position: 3, value: 5.25, tokenId: 7, text: " hunter2024" },
    { position: 4, value: 4.5, tokenId: 8, text: " sk" },
    { position: 5, value: 4.25, tokenId: 9, text: "-live-" },
    { position: 6, value: 4, tokenId: 10, text: "9f8e" },
  ],
}, {
  template: "saw '{text}' on tokens {tokens}",
  fields: { text: " hunter2024 sk-live-9f8e", tokens: "3-6" },
});

const withoutText = (a: Alert): Alert => ({
  ...a,
  evidence: a.evidence.map(({ text: _text, ...e }) => e),
});

/**
 * Every kind of alert a rendering must express, by kind: each variant of a
 * kind once per severity. The conformance tests render them all.
 */
export const ALERT_KINDS: Readonly<Record<string, readonly Alert[]>> = Object.fromEntries(
  Object.entries(
    {
      minimal: [MINIMAL],
      typical: [ALERT],
      "named conditions": [WITH_CONDITIONS],
      "adversarial strings": [NASTY],
      "with tenant": [{ ...MINIMAL, tenant: "acme" }, ALERT],
      "without tenant": [MINIMAL, { ...ALERT, tenant: undefined }],
      "steering actions": [{
        ...MINIMAL,
        steer: [
          { kind: "clamp", sae: "s", latent: 0, value: 0 },
          { kind: "ablate", sae: "s", latent: 1 },
          { kind: "add", scale: -2, direction: { sae: "s", latent: 2 } },
          { kind: "cap", max: 1.5, direction: { vector: [0.5, -0.5] } },
        ],
      }, ALERT],
      "probe signal": [{
        ...MINIMAL,
        latent: { sae: "jailbreak", index: 0, max: 0.91, threshold: 0.5, signal: "probe" },
        probes: [{ probe: "jailbreak", index: 0, value: 0.91, threshold: 0.5, label: "jb" }],
      }],
      "evidence with top latents": [{
        ...ALERT,
        evidence: ALERT.evidence.map((e) => ({
          ...e,
          topLatents: [{ index: 1234, value: e.value, label: "instruction override" }, {
            index: 7,
            value: 0.5,
          }],
        })),
      }],
      "ATLAS tags": [
        { ...MINIMAL, tags: ["AML.T0054"] },
        { ...MINIMAL, tags: ["AML.T0051.001", "AML.T0999", "AML.T0999.001", "AML.TA0005", "x"] },
        {
          ...MINIMAL,
          tags: ["AML.T0024.002"],
          atlas: [{ id: "AML.T0024.002", name: "Extract AI Model" }],
        },
      ],
      "with token text": [ALERT, {
        ...MINIMAL,
        evidence: [{ position: 0, value: 1, text: "é\n" }],
      }],
      "without token text": [withoutText(ALERT), withoutText(NASTY)],
      "redacted token text": [
        redactAlert(SECRET, { mode: "hash" }),
        redactAlert(SECRET, { mode: "tokens" }),
        redactAlert(NASTY, { mode: "hash", hashKey: "k" }),
      ],
      "trace context": [{
        ...MINIMAL,
        traceparent: ALERT.traceparent,
        trace: {
          traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
          spanId: "00f067aa0ba902b7",
          sampled: false,
          tracestate: "congo=t61rcWkgMzE",
        },
      }],
    } satisfies Record<string, Alert[]>,
  ).map(([kind, alerts]) => [
    kind,
    alerts.flatMap((a) => SEVERITIES.map((severity) => ({ ...a, severity }))),
  ]),
);
