/**
 * The zod schemas of a v2 rule's `when:` (and a macro's): the condition tree
 * (`all`, `any`, `not`, `macro`) over signal tests, a signal test (an SAE
 * latent by index, label, list or family, or a probe score, pooled, above or
 * below a threshold), its pooling and latent families, with the cross-key
 * checks zod runs in code. Part of the policy file schema
 * (`policy_file_schema.ts`); conversion to the AST is `policy_file_ast.ts`.
 *
 * @module
 */
import { z } from "zod";
import {
  encoderIdSchema,
  LatentIndexSchema,
  nameSchema,
  numberSchema,
  positiveSchema,
  valueSetSchema,
  wholeSchema,
} from "./policy_file_fields.ts";
import { choiceOf, expectMessage, isMapping } from "./yaml_source.ts";

const POOL_KEYS = ["max", "mean", "rolling_mean_max", "ema", "count"] as const;
const WINDOW = wholeSchema("a window of whole tokens ≥ 1", 1);

/** How per-token values are pooled; see `Pool` in ast.ts for the maths. */
export const PoolSchema = choiceOf([
  z.literal("token"),
  z.strictObject({ max: WINDOW }),
  z.strictObject({ mean: WINDOW }),
  z.strictObject({ rolling_mean_max: WINDOW }),
  z.strictObject({
    ema: z.strictObject({ half_life: positiveSchema("a half-life in tokens > 0") }),
  }),
  z.strictObject({
    count: z.strictObject({ window: WINDOW, above: numberSchema() }),
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
  of: LatentIndexSchema.meta({ description: "The concept's latent (its decoder is the concept)." }),
  members: z.array(LatentIndexSchema, { error: expectMessage("a list of latent indices") }).min(1, {
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
  sae: encoderIdSchema("an SAE").optional().meta({
    description: "SAE id from the monitor config.",
  }),
  latent: LatentIndexSchema.optional().meta({ description: "Latent index, 0 ≤ latent < d_sae." }),
  label: z.string().trim().min(1).optional().meta({
    description: "The latent whose label (e.g. Neuronpedia explanation) is this, ignoring case.",
  }),
  latents: valueSetSchema(LatentIndexSchema, "latent indices").optional().meta({
    description: "Several latents (or the name of a list of them): the test holds if it holds " +
      "for one.",
  }),
  family: FamilySchema.optional(),
  probe: encoderIdSchema("a probe").optional().meta({
    description: "Probe id from the monitor config.",
  }),
  score: LatentIndexSchema.optional().meta({
    description: "Which score of a multi-direction probe (default 0).",
  }),
  pool: PoolSchema.optional(),
  above: numberSchema().optional().meta({ description: "Holds when the pooled value is > above." }),
  below: numberSchema().optional().meta({ description: "Holds when the pooled value is < below." }),
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
    z.strictObject({ macro: nameSchema("a macro") }).meta({ description: "A named condition." }),
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
