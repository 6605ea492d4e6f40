/**
 * The schema of policy files: the zod schemas of v1 and v2 files (YAML keys
 * as written), the patterns of ids, names and MITRE ATLAS tags, and the check
 * of tags that look like ATLAS ids but are not. Validation is strict (unknown
 * keys are errors). `docs/policy.schema.json` is generated from these schemas
 * by `src/config/policy_schema.ts`; reading a file is `policy_file.ts`,
 * conversion to the compiler's AST `policy_file_ast.ts`.
 *
 * @module
 */
import { z } from "zod";
import { SEVERITIES, type Severity } from "../core/policy/ast.ts";
import { DEFAULT_POLICY_LIMITS } from "../core/policy/limits.ts";
import { REDACT_MODES } from "../core/redact.ts";
import { choiceOf, expectMessage, isMapping } from "./yaml_source.ts";

/** Rule ids: lowercase letters, digits, `.`, `_`, `-`, starting with a letter or digit. */
export const RULE_ID_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;

/** SAE ids as named in a monitor config. */
export const SAE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const NEGATIVE_WHY = "a latent that is not active reads as 0, so a negative threshold would " +
  "fire on every token (v0 rules only fire when a latent rises above a threshold)";

const LATENT = "an integer latent index ≥ 0";
const INDEX_LIMIT = DEFAULT_POLICY_LIMITS.latentIndex;
/** Indices above the limit are refused by the schema, so nothing is ever sized by one. */
const belowLimit = (what: string) => ({
  error: expectMessage(`${what} below ${INDEX_LIMIT} (limit latentIndex)`),
});
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
      latent: z.int({ error: expectMessage(LATENT) }).min(0, { error: expectMessage(LATENT) })
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
        } else if (w.latent === undefined) issue("latent", `expected ${LATENT} with 'sae'`);
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

/** Names of lists and macros: a letter or `_`, then letters, digits, `_`, `.` or `-`. */
export const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** A MITRE ATLAS technique or sub-technique id, e.g. `AML.T0051`, `AML.T0051.000`. */
export const ATLAS_TECHNIQUE_PATTERN = /^AML\.T\d{4}(\.\d{3})?$/;

/** A MITRE ATLAS tactic id, e.g. `AML.TA0005` (accepted as a tag too). */
export const ATLAS_TACTIC_PATTERN = /^AML\.TA\d{4}$/;

/** The file format versions this latentwatch reads. */
export const POLICY_FILE_VERSIONS = [1, 2] as const;

const SCOPES = ["prompt", "generation", "both"] as const;
const POOL_KEYS = ["max", "mean", "rolling_mean_max", "ema", "count"] as const;
const STEER_KEYS = ["clamp", "ablate", "add", "cap", "abort"] as const;

const NAME_TEXT = "a name of letters, digits, '_', '.' or '-' starting with a letter or '_'";
const name = (what: string) =>
  z.string({ error: expectMessage(`${what}: ${NAME_TEXT}`) }).regex(NAME_PATTERN, {
    error: expectMessage(`${what}: ${NAME_TEXT}`),
  });
const encoderId = (what: "an SAE" | "a probe") =>
  z.string().regex(SAE_ID_PATTERN, {
    error: expectMessage(`${what} id from the monitor config ([A-Za-z0-9][A-Za-z0-9._-]*)`),
  });
const number = (what = "a number") => z.number({ error: expectMessage(what) });
const positive = (what: string) => {
  const error = expectMessage(what);
  return z.number({ error }).positive({ error });
};
const whole = (what: string, min: number) => {
  const error = expectMessage(what);
  return z.int({ error }).min(min, { error });
};
const WINDOW = whole("a window of whole tokens ≥ 1", 1);
const latentIndex = whole(LATENT, 0).max(INDEX_LIMIT - 1, belowLimit("a latent index"));

/** `[a, b]` (literal values) or `name` (a `list`). */
function valueSet<T extends z.ZodType>(item: T, itemText: string) {
  return choiceOf([z.array(item), name("the name of a list")], {
    expected: `a list of ${itemText} ([a, b]) or the name of a list`,
    choose: (v) => Array.isArray(v) ? 0 : typeof v === "string" ? 1 : -1,
  });
}

const SCALAR = choiceOf([z.string(), z.number()], {
  expected: "a string or a number",
  choose: () => -1,
});

/** How per-token values are pooled; see `Pool` in ast.ts for the maths. */
export const PoolSchema = choiceOf([
  z.literal("token"),
  z.strictObject({ max: WINDOW }),
  z.strictObject({ mean: WINDOW }),
  z.strictObject({ rolling_mean_max: WINDOW }),
  z.strictObject({
    ema: z.strictObject({ half_life: positive("a half-life in tokens > 0") }),
  }),
  z.strictObject({
    count: z.strictObject({ window: WINDOW, above: number() }),
  }),
], {
  expected: "a pooling: token, {max: N}, {mean: N}, {rolling_mean_max: N}, " +
    "{ema: {half_life: H}} or {count: {window: N, above: X}}",
  choose: (v) =>
    v === "token" ? 0 : isMapping(v) ? POOL_KEYS.findIndex((k) => k in v) + 1 || -1 : -1,
  keys: POOL_KEYS,
}).meta({
  description: "How per-token values are pooled before the comparison (default: token). " +
    "Windows count tokens of the request, ending at the current one.",
});

const TEST_KEYS = [
  "sae",
  "latent",
  "label",
  "latents",
  "family",
  "probe",
  "score",
  "pool",
  "above",
  "below",
  "name",
];

/** A condition's name (`name:` on a signal test): no dots, so `{cond.<name>.<field>}` reads unambiguously. */
export const CONDITION_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_-]*$/;

const COSINE = "a cosine in (0, 1]";

/** A latent family: the concept latent `of` and its members (listed, or by decoder cosine). */
export const FamilySchema = z.strictObject({
  of: latentIndex.meta({ description: "The concept's latent (its decoder is the concept)." }),
  members: z.array(latentIndex, { error: expectMessage("a list of latent indices") }).min(1, {
    error: expectMessage("a list of at least one latent index"),
  }).optional().meta({
    description: "The latents that carry the concept (e.g. from `latentwatch sae family`).",
  }),
  min_cosine: z.number({ error: expectMessage(COSINE) }).gt(0, { error: expectMessage(COSINE) })
    .max(1, { error: expectMessage(COSINE) }).optional().meta({
      description: "Members: every latent whose decoder cosine with `of`'s is at least this, " +
        "resolved from the SAE when the policy is compiled.",
    }),
  combine: z.enum(["sum", "max"]).optional().meta({
    description: "How members combine per token (default sum).",
  }),
}).check((ctx) => {
  const f = ctx.value;
  if ((f.members === undefined) === (f.min_cosine === undefined)) {
    ctx.issues.push({
      code: "custom",
      input: f,
      path: f.members === undefined ? [] : ["min_cosine"],
      message: f.members === undefined
        ? "expected 'members: [...]' or 'min_cosine: X' (which latents carry the concept)"
        : "expected 'members' or 'min_cosine', found both",
    });
  }
}).meta({
  description: "A latent family: per token, combine over members of activation × decoder " +
    "cosine with the concept (catches feature absorption).",
});

/** One signal test: an SAE latent (by index, label or a list) or a probe score, pooled, above or below a threshold. */
export const SignalTestSchema = z.strictObject({
  sae: encoderId("an SAE").optional().meta({ description: "SAE id from the monitor config." }),
  latent: latentIndex.optional().meta({ description: "Latent index, 0 ≤ latent < d_sae." }),
  label: z.string().trim().min(1).optional().meta({
    description: "The latent whose label (e.g. Neuronpedia explanation) is this, ignoring case.",
  }),
  latents: valueSet(latentIndex, "latent indices").optional().meta({
    description: "Several latents (or the name of a list of them): the test holds if it holds " +
      "for one.",
  }),
  family: FamilySchema.optional(),
  probe: encoderId("a probe").optional().meta({ description: "Probe id from the monitor config." }),
  score: latentIndex.optional().meta({
    description: "Which score of a multi-direction probe (default 0).",
  }),
  pool: PoolSchema.optional(),
  above: number().optional().meta({ description: "Holds when the pooled value is > above." }),
  below: number().optional().meta({ description: "Holds when the pooled value is < below." }),
  name: z.string().regex(CONDITION_NAME_PATTERN, {
    error: expectMessage(
      "a condition name of letters, digits, '_' or '-' starting with a " +
        "letter or '_'",
    ),
  }).optional().meta({
    description: "The condition's name in alerts and in templates ({cond.<name>.value}); " +
      "unique within a rule. Default: the latent's label slugged, else <sae>.<latent> or " +
      "<probe>.<score>.",
  }),
}).check((ctx) => {
  const t = ctx.value;
  const issue = (path: (string | number)[], message: string) =>
    ctx.issues.push({ code: "custom", input: t, path, message });
  const saeKeys = (["latent", "label", "latents", "family"] as const).filter((k) =>
    t[k] !== undefined
  );
  if (t.probe !== undefined) {
    if (t.sae !== undefined) issue(["sae"], "expected 'sae' or 'probe', found both");
    for (const k of saeKeys) {
      issue([k], `expected '${k}' only with 'sae'; a probe's score is chosen with 'score'`);
    }
  } else if (t.sae === undefined) {
    issue(
      [],
      "expected a signal: 'sae' with 'latent', 'label', 'latents' or 'family' (SAE latents), or " +
        "'probe' (a probe score)",
    );
  } else {
    if (saeKeys.length === 0) {
      issue(
        [],
        "expected 'latent', 'label', 'latents' or 'family' with 'sae' (which latent to read)",
      );
    } else if (saeKeys.length > 1) {
      issue(
        [saeKeys[1]],
        `expected one of 'latent', 'label', 'latents' or 'family', found both '${
          saeKeys[0]
        }' and ` +
          `'${saeKeys[1]}'`,
      );
    }
    if (t.score !== undefined) issue(["score"], "expected 'score' only with 'probe'");
  }
  if (t.above === undefined && t.below === undefined) {
    issue([], "expected a threshold: 'above: X' or 'below: X'");
  } else if (t.above !== undefined && t.below !== undefined) {
    issue(["below"], "expected 'above' or 'below', found both");
  }
});

/** Zod output of a condition (before positions are attached). */
export type ConditionIn =
  | z.output<typeof SignalTestSchema>
  | { all: ConditionIn[] }
  | { any: ConditionIn[] }
  | { not: ConditionIn }
  | { macro: string };

const CONDITION_TEXT = "a condition: a signal test ({sae, latent, above} or {probe, above}), " +
  "{all: [...]}, {any: [...]}, {not: ...} or {macro: name}";

const conditionList = (key: string) => {
  const error = expectMessage(`a list of at least one condition under '${key}'`);
  return z.array(z.lazy(() => ConditionSchema), { error }).min(1, { error });
};

/** A condition: a signal test, `all`, `any`, `not` or a macro reference. */
export const ConditionSchema: z.ZodType<ConditionIn> = z.lazy(() =>
  choiceOf([
    SignalTestSchema,
    z.strictObject({ all: conditionList("all") }).meta({
      description: "Holds when every one holds.",
    }),
    z.strictObject({ any: conditionList("any") }).meta({ description: "Holds when one holds." }),
    z.strictObject({ not: ConditionSchema }).meta({ description: "Holds when it does not." }),
    z.strictObject({ macro: name("a macro") }).meta({ description: "A named condition." }),
  ], {
    expected: CONDITION_TEXT,
    choose: (v) => {
      if (!isMapping(v)) return -1;
      const i = ["all", "any", "not", "macro"].findIndex((k) => k in v);
      if (i >= 0) return i + 1;
      return TEST_KEYS.some((k) => k in v) ? 0 : -1;
    },
    keys: ["all", "any", "not", "macro", ...TEST_KEYS],
  })
).meta({ id: "condition" });

/** An exception: a request matching every key given is left alone. */
export const ExceptionSchema = z.strictObject({
  name: z.string().trim().min(1).optional(),
  tenant: valueSet(SCALAR, "tenants").optional(),
  model: valueSet(SCALAR, "models").optional(),
  metadata: z.record(z.string(), valueSet(SCALAR, "values")).optional().meta({
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

const DIRECTION_KEYS = { sae: encoderId("an SAE").optional(), latent: latentIndex.optional() };
function direction<T extends z.core.$ZodLooseShape>(extra: T, what: string) {
  return z.strictObject({
    ...DIRECTION_KEYS,
    vector: z.array(number(), {
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
    clamp: z.strictObject({ sae: encoderId("an SAE"), latent: latentIndex, value: number() }),
  }).meta({ description: "Clamp a latent to a value along its decoder direction." }),
  z.strictObject({
    ablate: z.strictObject({ sae: encoderId("an SAE"), latent: latentIndex }),
  }).meta({ description: "Remove a latent's decoder contribution." }),
  z.strictObject({ add: direction({ scale: number() }, "add") }).meta({
    description: "Add scale × a direction (a latent's decoder row or a vector).",
  }),
  z.strictObject({ cap: direction({ max: number() }, "cap") }).meta({
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
  z.strictObject({ tokens: whole("a whole number of tokens ≥ 1", 1) }),
  z.strictObject({ seconds: positive("a number of seconds > 0") }),
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
    alerts: whole("a whole number of alerts ≥ 1", 1),
    per_seconds: positive("a number of seconds > 0"),
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
    list: name("a list"),
    items: z.array(SCALAR),
  })).default([]).meta({ description: "Named lists of values: latents, tenants, models." }),
  macros: z.array(z.strictObject({
    macro: name("a macro"),
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
