/**
 * Description and dedup-key templates: `{name}` placeholders replaced by the
 * fields of a firing. Pure.
 *
 * A placeholder is `{` + a name of letters, digits, `_`, `-` and `.` + `}`.
 * There is no escaping: text that is not a well-formed placeholder (`{}`,
 * `{a b}`, a lone brace) is copied as is.
 *
 * @module
 */

/**
 * The fields a rule template may use. `meta.<key>` (request metadata) is
 * accepted for any key and is not listed here.
 */
export const TEMPLATE_FIELDS: readonly string[] = [
  "rule",
  "title",
  "severity",
  "model",
  "hook",
  "request_id",
  "tenant",
  "value",
  "signal",
  "label",
  "tokens",
  "text",
];

/**
 * The fields of one condition a template may read as
 * `{cond.<name>.<field>}`: its pooled value at the first firing token, its
 * threshold and op, its pooling (`max 8`), signal (`res12:4012`), label, and
 * whether it held (`true`/`false`).
 */
export const CONDITION_FIELDS: readonly string[] = [
  "value",
  "threshold",
  "op",
  "pool",
  "signal",
  "label",
  "held",
];

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_.-]*)\}/g;

/** Values a template reads: absent keys stay `{name}`, present-but-undefined ones render empty. */
export type TemplateFields = Readonly<Record<string, string | number | undefined>>;

/**
 * Numbers as people read them in alerts: integers as is, others to six
 * significant digits (a float32 activation has about seven).
 */
function show(v: string | number): string {
  if (typeof v === "string") return v;
  if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

/**
 * Replace each `{name}` in `template` by `fields[name]`. A name that is not a
 * key of `fields` is left as `{name}` (so a typo shows in the alert instead
 * of vanishing; compile reports it as a warning); a key whose value is
 * `undefined` (a request without a tenant) renders as the empty string.
 *
 * @example
 * ```ts
 * renderTemplate("{rule} fired on {request_id} ({nope})", { rule: "pi", request_id: "r1" });
 * // "pi fired on r1 ({nope})"
 * renderTemplate("value {value}", { value: 3.14159265 }); // "value 3.14159"
 * ```
 */
export function renderTemplate(template: string, fields: TemplateFields): string {
  if (!template.includes("{")) return template;
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    if (!Object.hasOwn(fields, name)) return whole;
    const v = fields[name];
    return v === undefined ? "" : show(v);
  });
}

/**
 * The placeholder names in `template`, in order of first appearance, without duplicates.
 *
 * @example
 * ```ts
 * templatePlaceholders("{rule}/{meta.team}/{rule}"); // ["rule", "meta.team"]
 * ```
 */
export function templatePlaceholders(template: string): string[] {
  const out: string[] = [];
  for (const m of template.matchAll(PLACEHOLDER)) {
    if (!out.includes(m[1])) out.push(m[1]);
  }
  return out;
}

/**
 * Whether `name` is a field templates can use: one of
 * {@linkcode TEMPLATE_FIELDS}, `meta.<key>`, or `cond.<name>.<field>` for a
 * condition among `conditions` (the rule's condition names) and a field of
 * {@linkcode CONDITION_FIELDS}.
 *
 * @example
 * ```ts
 * isTemplateField("meta.team"); // true
 * isTemplateField("tenat"); // false
 * isTemplateField("cond.email.value", ["email"]); // true
 * isTemplateField("cond.mail.value", ["email"]); // false
 * ```
 */
export function isTemplateField(name: string, conditions: readonly string[] = []): boolean {
  if (TEMPLATE_FIELDS.includes(name) || (name.startsWith("meta.") && name.length > 5)) return true;
  const c = conditionPlaceholder(name);
  return c !== undefined && CONDITION_FIELDS.includes(c.field) && conditions.includes(c.condition);
}

/**
 * A `cond.<name>.<field>` placeholder split into condition name and field
 * (the field is the last dot-separated part: default names may hold dots);
 * `undefined` for any other name.
 *
 * @example
 * ```ts
 * conditionPlaceholder("cond.res12.7.value"); // { condition: "res12.7", field: "value" }
 * conditionPlaceholder("meta.team"); // undefined
 * ```
 */
export function conditionPlaceholder(
  name: string,
): { condition: string; field: string } | undefined {
  if (!name.startsWith("cond.")) return undefined;
  const dot = name.lastIndexOf(".");
  if (dot <= 5) return undefined;
  return { condition: name.slice(5, dot), field: name.slice(dot + 1) };
}
