/**
 * MITRE ATLAS techniques and tactics for LLM misuse, bundled (ATLAS v5.6.0,
 * `mitre-atlas/atlas-data:data/techniques.yaml` and `tactics.yaml`), so that
 * an alert tagged `AML.T0051.000` renders with the technique's name and
 * tactics. An id outside the catalogue still maps, with its id only. Pure.
 *
 * @module
 */
import type { AlertAtlasTechnique } from "../alert.ts";

/** ATLAS version the bundled catalogue was read from. */
export const ATLAS_VERSION = "5.6.0";

/** A MITRE ATLAS technique or sub-technique id, e.g. `AML.T0051`, `AML.T0051.000`. */
export const ATLAS_TECHNIQUE_ID = /^AML\.T\d{4}(\.\d{3})?$/;

/** ATLAS tactics by id. */
export const ATLAS_TACTICS: Readonly<Record<string, string>> = {
  "AML.TA0000": "AI Model Access",
  "AML.TA0001": "AI Attack Staging",
  "AML.TA0002": "Reconnaissance",
  "AML.TA0003": "Resource Development",
  "AML.TA0004": "Initial Access",
  "AML.TA0005": "Execution",
  "AML.TA0006": "Persistence",
  "AML.TA0007": "Defense Evasion",
  "AML.TA0008": "Discovery",
  "AML.TA0009": "Collection",
  "AML.TA0010": "Exfiltration",
  "AML.TA0011": "Impact",
  "AML.TA0012": "Privilege Escalation",
  "AML.TA0013": "Credential Access",
  "AML.TA0014": "Command and Control",
  "AML.TA0015": "Lateral Movement",
};

/** ATLAS techniques and sub-techniques by id: name and tactic ids (sub-techniques inherit their parent's). */
export const ATLAS_TECHNIQUES: Readonly<Record<string, { name: string; tactics?: string[] }>> = {
  "AML.T0015": { name: "Evade AI Model", tactics: ["AML.TA0004", "AML.TA0007", "AML.TA0011"] },
  "AML.T0024": { name: "Exfiltration via AI Inference API", tactics: ["AML.TA0010"] },
  "AML.T0024.000": { name: "Infer Training Data Membership" },
  "AML.T0024.001": { name: "Invert AI Model" },
  "AML.T0024.002": { name: "Extract AI Model" },
  "AML.T0025": { name: "Exfiltration via Cyber Means", tactics: ["AML.TA0010"] },
  "AML.T0029": { name: "Denial of AI Service", tactics: ["AML.TA0011"] },
  "AML.T0034": { name: "Cost Harvesting", tactics: ["AML.TA0011"] },
  "AML.T0048": { name: "External Harms", tactics: ["AML.TA0011"] },
  "AML.T0048.003": { name: "User Harm" },
  "AML.T0051": { name: "LLM Prompt Injection", tactics: ["AML.TA0005"] },
  "AML.T0051.000": { name: "Direct" },
  "AML.T0051.001": { name: "Indirect" },
  "AML.T0051.002": { name: "Triggered" },
  "AML.T0053": { name: "AI Agent Tool Invocation", tactics: ["AML.TA0005", "AML.TA0012"] },
  "AML.T0054": { name: "LLM Jailbreak", tactics: ["AML.TA0012", "AML.TA0007"] },
  "AML.T0056": { name: "Extract LLM System Prompt", tactics: ["AML.TA0010"] },
  "AML.T0057": { name: "LLM Data Leakage", tactics: ["AML.TA0010"] },
  "AML.T0065": { name: "LLM Prompt Crafting", tactics: ["AML.TA0003"] },
  "AML.T0068": { name: "LLM Prompt Obfuscation", tactics: ["AML.TA0007"] },
  "AML.T0069": { name: "Discover LLM System Information", tactics: ["AML.TA0008"] },
  "AML.T0069.002": { name: "System Prompt" },
  "AML.T0077": { name: "LLM Response Rendering", tactics: ["AML.TA0010"] },
  "AML.T0080": { name: "AI Agent Context Poisoning", tactics: ["AML.TA0006"] },
  "AML.T0086": { name: "Exfiltration via AI Agent Tool Invocation", tactics: ["AML.TA0010"] },
};

/** ATLAS web page of a technique or tactic id. */
export function atlasUrl(id: string): string {
  return `https://atlas.mitre.org/${id.startsWith("AML.TA") ? "tactics" : "techniques"}/${id}`;
}

/**
 * The MITRE ATLAS techniques among `tags` (`AML.Tdddd`, `AML.Tdddd.ddd`), in
 * tag order without repeats, with names and tactics from the catalogue.
 * Other tags (tactic ids included) are not techniques and are skipped.
 *
 * @example
 * ```ts
 * atlasOf(["prompt-injection", "AML.T0051.000"]);
 * // [{ id: "AML.T0051.000", name: "Direct",
 * //    tactics: [{ id: "AML.TA0005", name: "Execution" }] }]
 * ```
 */
export function atlasOf(tags: readonly string[] | undefined): AlertAtlasTechnique[] {
  const out: AlertAtlasTechnique[] = [];
  const seen = new Set<string>();
  for (const tag of tags ?? []) {
    if (!ATLAS_TECHNIQUE_ID.test(tag) || seen.has(tag)) continue;
    seen.add(tag);
    const entry = ATLAS_TECHNIQUES[tag];
    const parent = ATLAS_TECHNIQUES[tag.slice(0, 9)];
    const tacticIds = entry?.tactics ?? parent?.tactics ?? [];
    out.push({
      id: tag,
      ...(entry ? { name: entry.name } : {}),
      ...(tacticIds.length > 0
        ? { tactics: tacticIds.map((id) => ({ id, name: ATLAS_TACTICS[id] ?? id })) }
        : {}),
    });
  }
  return out;
}
