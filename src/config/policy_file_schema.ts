/**
 * The schema of policy files: the zod schemas of v1 and v2 files (YAML keys
 * as written), the patterns of MITRE ATLAS tags, and the check of tags that
 * look like ATLAS ids but are not. A v2 rule's condition is
 * `policy_file_conditions.ts`, the fields both versions share (ids, names,
 * latent indices, value sets) `policy_file_fields.ts`; this module
 * re-exports their public names. Validation is strict (unknown keys are
 * errors). `docs/policy.schema.json` is generated from these schemas by
 * `src/config/policy_schema.ts`; reading a file is `policy_file.ts`,
 * conversion to the compiler's AST `policy_file_ast.ts`.
 *
 * @module
 */
import { z } from "zod";
import { SEVERITIES, type Severity } from "../core/policy/ast.ts";
import { REDACT_MODES } from "../core/redact.ts";
import { ConditionSchema } from "./policy_file_conditions.ts";
import {
  belowLimit,
  encoderIdSchema,
  INDEX_LIMIT,
  LATENT_TEXT,
  LatentIndexSchema,
  nameSchema,
  numberSchema,
  positiveSchema,
  RULE_ID_PATTERN,
  SAE_ID_PATTERN,
  ScalarSchema,
  valueSetSchema,
  wholeSchema,
} from "./policy_file_fields.ts";
import { choiceOf, expectMessage, isMapping } from "./yaml_source.ts";

export {
  CONDITION_NAME_PATTERN,
  type ConditionIn,
  ConditionSchema,
  FamilySchema,
  PoolSchema,
  SignalTestSchema,
} from "./policy_file_conditions.ts";
export { NAME_PATTERN, RULE_ID_PATTERN, SAE_ID_PATTERN } from "./policy_file_fields.ts";

const NEGATIVE_WHY = "a latent that is not active reads as 0, so a negative threshold would " +
  "fire on every token (v0 rules only fire when a latent rises above a threshold)";

const SCORE = "an integer score index ≥ 0 (0 for a probe with one direction)";

/** The zod schema of a v1 policy file (YAML keys as written). */
export const PolicyFileSchema = z.strictObject({
  version: z.literal(1, {
    error: expectMessage("version: 1 (the policy file format this latentwatch reads)"),
  }),
  rules: z.array(z.strictObject({
    id: z.string().regex(RULE_ID_PATTERN, {
      error: expectMessage(
        "a rule id of lowercase letters, digits, '.', '_' or '-' ([a-z0-9][a-z0-9._-]*)",
      ),
    }),
    title: z.string().trim().min(1),
    severity: z.enum(SEVERITIES as [Severity, ...Severity[]]),
    description: z.string().optional(),
    when: z.strictObject({
      sae: z.string().regex(SAE_ID_PATTERN, {
        error: expectMessage("an SAE id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)"),
      }).optional(),
      latent: z.int({ error: expectMessage(LATENT_TEXT) }).min(0, {
        error: expectMessage(LATENT_TEXT),
      })
        .max(INDEX_LIMIT - 1, belowLimit("a latent index")).optional(),
      probe: z.string().regex(SAE_ID_PATTERN, {
        error: expectMessage("a probe id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)"),
      }).optional(),
      score: z.int({ error: expectMessage(SCORE) }).min(0, { error: expectMessage(SCORE) })
        .max(INDEX_LIMIT - 1, belowLimit("a score index")).optional(),
      above: z.number({ error: expectMessage("a number") }),
    }).check((ctx) => {
      const w = ctx.value;
      const issue = (path: string, message: string) =>
        ctx.issues.push({ code: "custom", input: w, path: [path], message });
      if (w.probe === undefined) {
        if (w.sae === undefined) {
          issue(
            "sae",
            "expected either 'sae' with 'latent' (an SAE latent) or 'probe' (a probe score)",
          );
        } else if (w.latent === undefined) issue("latent", `expected ${LATENT_TEXT} with 'sae'`);
        if (w.score !== undefined) issue("score", "expected 'score' only with 'probe'");
        if (w.above < 0) issue("above", `expected a number ≥ 0, found ${w.above}; ${NEGATIVE_WHY}`);
      } else {
        if (w.sae !== undefined) issue("sae", "expected 'sae' or 'probe', found both");
        if (w.latent !== undefined) issue("latent", "expected 'score' (not 'latent') with 'probe'");
      }
    }),
  })),
});

/** A v1 policy file as written, after validation. */
export type PolicyFile = z.output<typeof PolicyFileSchema>;

// ---------------------------------------------------------------------------
// Version 2

/** A MITRE ATLAS technique or sub-technique id, e.g. `AML.T0051`, `AML.T0051.000`. */
export const ATLAS_TECHNIQUE_PATTERN = /^AML\.T\d{4}(\.\d{3})?$/;

/** A MITRE ATLAS tactic id, e.g. `AML.TA0005` (accepted as a tag too). */
export const ATLAS_TACTIC_PATTERN = /^AML\.TA\d{4}$/;

/** The file format versions this latentwatch reads. */
export const POLICY_FILE_VERSIONS = [1, 2] as const;

const SCOPES = ["prompt", "generation", "both"] as const;
const STEER_KEYS = ["clamp", "ablate", "add", "cap", "abort"] as const;

/** An exception: a request matching every key given is left alone. */
export const ExceptionSchema = z.strictObject({
  name: z.string().trim().min(1).optional(),
  tenant: valueSetSchema(ScalarSchema, "tenants").optional(),
  model: valueSetSchema(ScalarSchema, "models").optional(),
  metadata: z.record(z.string(), valueSetSchema(ScalarSchema, "values")).optional().meta({
    description: "Request metadata (Lw-Meta-<key> frame headers): key → allowed values.",
  }),
}).check((ctx) => {
  const e = ctx.value;
  if (e.tenant === undefined && e.model === undefined && e.metadata === undefined) {
    ctx.issues.push({
      code: "custom",
      input: e,
      path: [],
      message: "expected at least one of 'tenant', 'model' or 'metadata' in an exception " +
        "(an exception without them would match every request)",
    });
  }
});

const DIRECTION_KEYS = {
  sae: encoderIdSchema("an SAE").optional(),
  latent: LatentIndexSchema.optional(),
};
function direction<T extends z.core.$ZodLooseShape>(extra: T, what: string) {
  return z.strictObject({
    ...DIRECTION_KEYS,
    vector: z.array(numberSchema(), {
      error: expectMessage("a non-empty list of numbers (a direction in the model's space)"),
    }).min(1, {
      error: expectMessage("a non-empty list of numbers (a direction in the model's space)"),
    }).optional(),
    ...extra,
  }).check((ctx) => {
    const d = ctx.value as { sae?: string; latent?: number; vector?: number[] };
    const issue = (path: string[], message: string) =>
      ctx.issues.push({ code: "custom", input: d, path, message });
    if (d.vector !== undefined && (d.sae !== undefined || d.latent !== undefined)) {
      issue(
        ["vector"],
        `${what}: expected a latent ('sae' and 'latent') or a 'vector', found both`,
      );
    } else if (d.vector === undefined) {
      if (d.sae === undefined) {
        issue(
          [],
          `${what}: expected a direction: 'sae' with 'latent' (its decoder row), or 'vector'`,
        );
      } else if (d.latent === undefined) issue([], `${what}: expected 'latent' with 'sae'`);
    }
  });
}

/** A steering command; `abort` alone stops the generation. */
export const SteerSchema = choiceOf([
  z.literal("abort"),
  z.strictObject({
    clamp: z.strictObject({
      sae: encoderIdSchema("an SAE"),
      latent: LatentIndexSchema,
      value: numberSchema(),
    }),
  }).meta({ description: "Clamp a latent to a value along its decoder direction." }),
  z.strictObject({
    ablate: z.strictObject({ sae: encoderIdSchema("an SAE"), latent: LatentIndexSchema }),
  }).meta({ description: "Remove a latent's decoder contribution." }),
  z.strictObject({ add: direction({ scale: numberSchema() }, "add") }).meta({
    description: "Add scale × a direction (a latent's decoder row or a vector).",
  }),
  z.strictObject({ cap: direction({ max: numberSchema() }, "cap") }).meta({
    description: "Cap the projection onto a direction at max.",
  }),
  z.strictObject({
    abort: z.strictObject({ reason: z.string().trim().min(1).optional() }),
  }).meta({ description: "Stop the generation, with a reason." }),
], {
  expected: "a steering command: abort, {clamp: {sae, latent, value}}, {ablate: {sae, latent}}, " +
    "{add: {sae, latent, scale}}, {add: {vector, scale}}, {cap: {..., max}} or {abort: {reason}}",
  choose: (v) =>
    v === "abort" ? 0 : isMapping(v) ? STEER_KEYS.findIndex((k) => k in v) + 1 || -1 : -1,
  keys: STEER_KEYS,
});

/** An action: `alert`, or `{steer: ...}`. */
export const ActionSchema = choiceOf([
  z.literal("alert"),
  z.strictObject({ steer: SteerSchema }),
], {
  expected: "an action: alert or {steer: ...}",
  choose: (v) => v === "alert" ? 0 : isMapping(v) && "steer" in v ? 1 : -1,
  keys: ["steer"],
});

/** After firing, how long a rule stays quiet for a dedup key. */
export const SuppressSchema = choiceOf([
  z.enum(["request", "none"]),
  z.strictObject({ tokens: wholeSchema("a whole number of tokens ≥ 1", 1) }),
  z.strictObject({ seconds: positiveSchema("a number of seconds > 0") }),
], {
  expected: "request, none, {tokens: N} or {seconds: S}",
  choose: (v) =>
    v === "request" || v === "none"
      ? 0
      : isMapping(v)
      ? "tokens" in v ? 1 : "seconds" in v ? 2 : -1
      : -1,
  keys: ["tokens", "seconds"],
}).meta({
  description: "After a rule fires for a dedup key: quiet for the rest of the request " +
    "(request, the default), never (none), for N tokens or for S seconds.",
});

const TAG_TEXT = "a tag without spaces (e.g. prompt-injection or AML.T0051.000)";

/** One v2 rule. */
export const RuleSchema = z.strictObject({
  id: z.string().regex(RULE_ID_PATTERN, {
    error: expectMessage(
      "a rule id of lowercase letters, digits, '.', '_' or '-' ([a-z0-9][a-z0-9._-]*)",
    ),
  }).meta({ description: "Stable id, unique across every file a monitor loads; alerts carry it." }),
  title: z.string().trim().min(1).meta({ description: "One line for people: the alert's title." }),
  severity: z.enum(SEVERITIES as [Severity, ...Severity[]]),
  description: z.string().optional().meta({
    description: "Alert description template: {rule} {title} {severity} {model} {hook} " +
      "{request_id} {tenant} {value} {signal} {label} {tokens} {text} {meta.<key>}.",
  }),
  tags: z.array(
    z.string({ error: expectMessage(TAG_TEXT) }).regex(/^\S+$/, { error: expectMessage(TAG_TEXT) }),
  ).default([]).meta({
    description: "Free tags; MITRE ATLAS ids (AML.T0051, AML.T0051.000) are checked.",
  }),
  scope: z.enum(SCOPES).default("both").meta({
    description: "prompt (prefill), generation (decode) or both (default).",
  }),
  enabled: z.boolean().default(true),
  when: ConditionSchema,
  exceptions: z.array(ExceptionSchema).default([]),
  actions: z.array(ActionSchema).default(["alert"]).meta({
    description: "What the rule does when it fires (default: [alert]).",
  }),
  suppress: SuppressSchema.default("request"),
  dedup_key: z.string().trim().min(1).default("{request_id}").meta({
    description: "Template of the key suppression groups by (default {request_id}).",
  }),
  rate_limit: z.strictObject({
    alerts: wholeSchema("a whole number of alerts ≥ 1", 1),
    per_seconds: positiveSchema("a number of seconds > 0"),
  }).optional().meta({
    description: "At most `alerts` firings per `per_seconds`, across requests.",
  }),
  redact: z.enum(REDACT_MODES, { error: expectMessage("one of none, hash, tokens") }).optional()
    .meta({
      description: "Redaction of the firing tokens' text in this rule's alerts: none " +
        "(default), hash (sha256:… digest) or tokens ([redacted]); the stricter of this " +
        "and the monitor's or sink's setting wins.",
    }),
});

/** The zod schema of a v2 policy file (YAML keys as written). */
export const PolicyFileV2Schema = z.strictObject({
  version: z.literal(2),
  lists: z.array(z.strictObject({
    list: nameSchema("a list"),
    items: z.array(ScalarSchema),
  })).default([]).meta({ description: "Named lists of values: latents, tenants, models." }),
  macros: z.array(z.strictObject({
    macro: nameSchema("a macro"),
    when: ConditionSchema,
  })).default([]).meta({ description: "Named conditions rules use as {macro: name}." }),
  rules: z.array(RuleSchema).default([]),
});

/** Every policy file this latentwatch reads, by `version` (for the JSON Schema). */
export const PolicyDocumentSchema = z.discriminatedUnion("version", [
  PolicyFileSchema,
  PolicyFileV2Schema,
]);

/** A v2 policy file as written, after validation. */
export type PolicyFileV2 = z.output<typeof PolicyFileV2Schema>;

/**
 * Warnings for tags that look like MITRE ATLAS ids but are not well formed
 * (`aml.t0051`, `AML.T51`, `atlas.aml.t0054`): alerts map `AML.T…` tags to
 * ATLAS techniques for SOC tools, and a malformed one would silently not map.
 *
 * @example
 * ```ts
 * atlasTagProblem("AML.T0051.000"); // undefined
 * atlasTagProblem("aml.t0051"); // "tag 'aml.t0051' looks like a MITRE ATLAS id ...; did you mean 'AML.T0051'?"
 * ```
 */
export function atlasTagProblem(tag: string): string | undefined {
  if (ATLAS_TECHNIQUE_PATTERN.test(tag) || ATLAS_TACTIC_PATTERN.test(tag)) return undefined;
  if (!/^(atlas[._-])?aml[._-]?t/i.test(tag)) return undefined;
  const fixed = tag.replace(/^atlas[._-]/i, "").toUpperCase().replace(/^AML[_-]?T/, "AML.T");
  const hint = ATLAS_TECHNIQUE_PATTERN.test(fixed) || ATLAS_TACTIC_PATTERN.test(fixed)
    ? `; did you mean '${fixed}'?`
    : "";
  return `tag '${tag}' looks like a MITRE ATLAS id but is not one: expected AML.Tdddd or ` +
    `AML.Tdddd.ddd (a technique, e.g. AML.T0051.000) or AML.TAdddd (a tactic)${hint}`;
}
