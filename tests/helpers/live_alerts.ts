/**
 * Sample alerts for the tests of `alerts tail`, the live feed and deploy/.
 *
 * @module
 */
import { type Alert, alertId } from "../../src/core/alert.ts";
import type { Severity } from "../../src/core/policy/ast.ts";

/**
 * A complete `latentwatch.alert/v1` record with a stable id; `over` replaces fields.
 *
 * @example
 * ```ts
 * const a = sampleAlert({ severity: "critical", requestId: "req-9" });
 * ```
 */
export function sampleAlert(
  over: Partial<Alert> & { severity?: Severity; rule?: string; position?: number } = {},
): Alert {
  const { rule = "prompt-injection", position = 12, ...rest } = over;
  const monitor = rest.monitor ?? "demo";
  const requestId = rest.requestId ?? "req-1";
  return {
    schema: "latentwatch.alert/v1",
    id: alertId(monitor, requestId, rule, position),
    time: "2026-05-01T12:00:00.000Z",
    monitor,
    policy: { id: rule, file: "policies/demo.yaml", line: 3, version: "abc123" },
    severity: "high",
    title: "Prompt injection latent fired",
    model: "gpt2-small",
    hook: "blocks.8.hook_resid_pre",
    requestId,
    tokens: { start: position, end: position + 3, count: 3 },
    latent: { sae: "res-jb", index: 1234, threshold: 3, max: 5.25, label: "instructions override" },
    evidence: [
      { position, value: 5.25, tokenId: 40, text: " ignore" },
      { position: position + 1, value: 4.1, tokenId: 41, text: " previous" },
      { position: position + 2, value: 3.2, tokenId: 42, text: "\ninstructions" },
    ],
    ...rest,
  };
}
