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
 * {@linkcode TEMPLATE_FIELDS} or `meta.<key>`.
 *
 * @example
 * ```ts
 * isTemplateField("meta.team"); // true
 * isTemplateField("tenat"); // false
 * ```
 */
export function isTemplateField(name: string): boolean {
  return TEMPLATE_FIELDS.includes(name) || (name.startsWith("meta.") && name.length > 5);
}
