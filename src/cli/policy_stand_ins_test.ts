import assert from "node:assert/strict";
import { parsePolicyFileDef } from "../config/policy_file.ts";
import type { SignalInfo } from "../core/policy/compile.ts";
import { standInSignals } from "./policy_stand_ins.ts";

/** The latent index limit (`DEFAULT_POLICY_LIMITS.latentIndex`), written out. */
const WIDE = 2_147_483_648;

const sae = (labels: [number, string][] = []): SignalInfo => ({
  kind: "sae",
  dSae: WIDE,
  labels: new Map(labels),
});

Deno.test("stand-ins: every SAE and probe the files name, from rules, macros, lists and steering", () => {
  const def = parsePolicyFileDef(
    `version: 2
lists:
  - list: hot
    items: [40, 41]
macros:
  - macro: m
    when: { sae: a, latent: 7, above: 1 }
rules:
  - id: r1
    title: R1
    severity: low
    when:
      all:
        - { macro: m }
        - { sae: a, label: " Prompt Injection ", above: 1 }
        - not: { probe: pr, score: 3, above: 0.5 }
        - { sae: b, latents: hot, above: 2 }
        - { sae: c, family: { of: 5, members: [5, 90] }, above: 1 }
        - any:
            - { sae: b, label: lb, above: 1 }
            - { sae: c, label: lc, above: 1 }
            - { sae: d, label: ld, above: 1 }
            - { sae: e, label: le, above: 1 }
    actions:
      - alert
      - steer: { clamp: { sae: d, latent: 12, value: 0 } }
      - steer: { add: { sae: e, latent: 3, scale: -4 } }
`,
    "p.yaml",
  );
  assert.deepEqual(
    standInSignals([def]),
    new Map<string, SignalInfo>([
      // each SAE's labels get the latents after the highest index the files name for it: 7 in
      // the macro, 41 in the list, 90 a family member, 12 and 3 steering targets
      ["a", sae([[8, "prompt injection"]])],
      ["b", sae([[42, "lb"]])],
      ["c", sae([[91, "lc"]])],
      ["d", sae([[13, "ld"]])],
      ["e", sae([[4, "le"]])],
      ["pr", { kind: "probe", dSae: WIDE }],
    ]),
  );
});

Deno.test("stand-ins: labels take latents from 0 up, and a name used as SAE and probe stays an SAE", () => {
  const files = [
    `version: 2
rules:
  - id: r1
    title: R1
    severity: low
    when:
      any:
        - { sae: x, label: second, above: 1 }
        - { sae: x, label: first, above: 1 }
        - { sae: x, label: FIRST, above: 1 }
`,
    `version: 2
rules:
  - id: r2
    title: R2
    severity: low
    when:
      any:
        - { probe: x, above: 0.5 }
        - { sae: y, latents: [2, 9], above: 1 }
        - { sae: z, latents: missing_list, above: 1 }
`,
  ].map((text, i) => parsePolicyFileDef(text, `p${i}.yaml`));
  assert.deepEqual(
    standInSignals(files),
    new Map<string, SignalInfo>([
      ["x", sae([[0, "second"], [1, "first"]])],
      ["y", sae()],
      ["z", sae()],
    ]),
  );
  assert.deepEqual(standInSignals([]), new Map());
});
