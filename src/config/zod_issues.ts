/**
 * zod validation of a {@linkcode YamlSource}: every issue becomes a
 * {@linkcode ConfigIssue} at its `file:line:col` whose reason says what was
 * expected and what was found; all of them are thrown as one
 * {@linkcode ConfigError}.
 *
 * @module
 */
import type { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors.ts";
import { choiceFromMessage, describeValue, isMapping } from "../shared/schema.ts";
import type { YamlPath, YamlSource } from "./yaml_source.ts";

/** Marks messages produced by the default error map, so custom schema messages win. */
const DEFAULT = "\u0000default";

/** Per-parse zod error map: defer default messages to {@linkcode zodIssuesToConfig}. */
function deferDefault(iss: { code?: string; inst?: unknown }): string {
  if (iss.code === "unrecognized_keys") {
    // deno-lint-ignore no-explicit-any
    const shape = (iss.inst as any)?._zod?.def?.shape;
    return DEFAULT + (shape ? Object.keys(shape).join(",") : "");
  }
  // z.int() reports a non-number as expected "number"; say "an integer" instead.
  // deno-lint-ignore no-explicit-any
  if (iss.code === "invalid_type" && /int/.test((iss.inst as any)?._zod?.def?.format ?? "")) {
    return DEFAULT + "int";
  }
  return DEFAULT;
}

/**
 * Validate `src.value` against a zod schema. Returns the parsed output, or
 * throws one {@linkcode ConfigError} with every zod issue (plus `extra`
 * issues found by other checks) at its `file:line:col`.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { parseYamlSource } from "./yaml_source.ts";
 * const src = parseYamlSource("port: high\n", "m.yaml");
 * validateYaml(z.strictObject({ port: z.int() }), src);
 * // throws ConfigError 'm.yaml:1:7: expected an integer, found the string "high"'
 * ```
 */
export function validateYaml<S extends z.ZodType>(
  schema: S,
  src: YamlSource,
  extra: readonly ConfigIssue[] = [],
): z.output<S> {
  const result = schema.safeParse(src.value, { error: deferDefault });
  const issues = [...extra];
  if (!result.success) issues.push(...zodIssuesToConfig(result.error.issues, src));
  if (issues.length > 0) throw new ConfigError(issues);
  return result.data as z.output<S>;
}

/**
 * Duplicate `id`s among the items of the top-level list `listKey`, found on
 * the raw value (before validation) so they show up with the other issues.
 * Each repeat is reported at its `id`, naming the line of the first; items
 * without a string `id` are skipped (the schema reports them).
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * const src = parseYamlSource("rules:\n  - id: a\n  - id: a\n", "p.yaml");
 * duplicateIds(src, "rules", "rule");
 * // [{ file: "p.yaml", line: 3, col: 9, reason: "duplicate rule id 'a': expected ids to be
 * //   unique, found it already defined at line 2" }]
 * ```
 */
export function duplicateIds(
  src: YamlSource,
  listKey: string | readonly string[],
  noun: string,
): ConfigIssue[] {
  // several lists may share one id namespace (a monitor's SAEs and probes)
  const seen = new Map<string, number>();
  const issues: ConfigIssue[] = [];
  for (const key of typeof listKey === "string" ? [listKey] : listKey) {
    const items = (src.value as Record<string, unknown> | null)?.[key];
    if (!Array.isArray(items)) continue;
    items.forEach((item, i) => {
      const id = (item as { id?: unknown } | null)?.id;
      if (typeof id !== "string") return;
      const at = src.locate([key, i, "id"]);
      const first = seen.get(id);
      if (first === undefined) seen.set(id, at.line);
      else {
        issues.push({
          file: src.file,
          ...at,
          reason: `duplicate ${noun} id '${id}': expected ids to be unique, found it already ` +
            `defined at line ${first}`,
        });
      }
    });
  }
  return issues;
}

/**
 * Turn zod issues into positioned {@linkcode ConfigIssue}s whose reasons say
 * what was expected and what was found. An unknown key becomes one issue per
 * key, at the key.
 *
 * @example
 * ```ts
 * import type { z } from "zod";
 * import type { YamlSource } from "./yaml_source.ts";
 * declare const schema: z.ZodType, src: YamlSource;
 * const r = schema.safeParse(src.value, {});
 * if (!r.success) zodIssuesToConfig(r.error.issues, src);
 * // [{ file, line: 4, col: 13, reason: "expected one of info, low, ..., found the string \"hgh\"" }]
 * ```
 */
export function zodIssuesToConfig(
  issues: readonly z.core.$ZodIssue[],
  src: YamlSource,
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.filter((p): p is string | number =>
      typeof p === "string" || typeof p === "number"
    );
    const isDefault = issue.message.startsWith(DEFAULT);
    if (issue.code === "unrecognized_keys") {
      const allowed = isDefault ? issue.message.slice(DEFAULT.length).split(",") : [];
      for (const key of issue.keys) {
        const at = src.locate([...path, key], "key");
        out.push({ file: src.file, ...at, reason: unknownKeyReason(key, allowed) });
      }
      continue;
    }
    const choice = issue.code === "invalid_union" ? choiceFromMessage(issue.message) : undefined;
    if (issue.code === "invalid_union" && choice) {
      const { present, value } = valueAt(src.value, path);
      const i = present ? choice.choose(value) : -1;
      const branch = i >= 0 ? issue.errors[i] : undefined;
      if (branch && branch.length > 0) {
        // the chosen option's issues are relative to the union's value
        out.push(...zodIssuesToConfig(
          branch.map((b) => ({ ...b, path: [...path, ...b.path] }) as z.core.$ZodIssue),
          src,
        ));
      } else {
        const key = path.at(-1);
        let found = describeValue(value);
        if (isMapping(value)) {
          const keys = Object.keys(value);
          found = keys.length === 0
            ? "an empty mapping"
            : `a mapping with key(s) ${keys.map((k) => `'${k}'`).join(", ")}`;
          const close = keys.flatMap((k) =>
            (choice.keys ?? []).filter((c) =>
              editDistance(c, k) <= 2
            ).map((c) => [k, c])
          )[0];
          if (close) found += ` (did you mean '${close[1]}'?)`;
        }
        out.push({
          file: src.file,
          ...src.locate(path),
          reason: !present && typeof key === "string"
            ? `missing required key '${key}' (expected ${choice.expected})`
            : `expected ${choice.expected}, found ${found}`,
        });
      }
      continue;
    }
    const at = src.locate(path);
    const isInt = issue.code === "invalid_type" && issue.message === `${DEFAULT}int`;
    const reason = isDefault
      ? defaultReason(isInt ? { ...issue, expected: "int" } : issue, src.value, path)
      : issue.message;
    out.push({ file: src.file, ...at, reason });
  }
  return out;
}

function unknownKeyReason(key: string, allowed: readonly string[]): string {
  const known = allowed.filter((k) => k !== "");
  let reason = `unknown key '${key}'`;
  const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const close = known.find((k) => k === snake) ?? known.find((k) => editDistance(k, key) <= 2);
  if (close) reason += ` (did you mean '${close}'?)`;
  if (known.length > 0) reason += `; expected one of: ${known.join(", ")}`;
  return reason;
}

/** Levenshtein distance, for "did you mean" hints on short keys. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function valueAt(root: unknown, path: YamlPath): { present: boolean; value: unknown } {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, seg)) {
      return { present: false, value: undefined };
    }
    node = (node as Record<string | number, unknown>)[seg];
  }
  return { present: true, value: node };
}

const TYPE_NAMES: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "a mapping",
  record: "a mapping",
  array: "a list",
  null: "an empty value",
};

function defaultReason(issue: z.core.$ZodIssue, root: unknown, path: YamlPath): string {
  const { present, value } = valueAt(root, path);
  if (!present) {
    const key = path.at(-1);
    const expected = expectedText(issue);
    if (path.length === 0) return `expected ${expected}, found an empty file`;
    return typeof key === "string"
      ? `missing required key '${key}' (expected ${expected})`
      : `missing item ${key} (expected ${expected})`;
  }
  const found = path.length === 0 && value === null ? "an empty file" : describeValue(value);
  return `expected ${expectedText(issue)}, found ${found}`;
}

function bound(origin: string, op: string, n: number | bigint): string {
  switch (origin) {
    case "array":
    case "set":
      return op.startsWith("≥")
        ? `a list of at least ${n} item(s)`
        : `a list of at most ${n} item(s)`;
    case "string":
      return op.startsWith("≥") && Number(n) === 1
        ? "a non-empty string"
        : `a string of ${op.startsWith("≥") ? "at least" : "at most"} ${n} character(s)`;
    case "int":
      return `an integer ${op} ${n}`;
    default:
      return `a number ${op} ${n}`;
  }
}

function expectedText(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return TYPE_NAMES[issue.expected] ?? issue.expected;
    case "too_small":
      return bound(issue.origin, issue.inclusive === false ? ">" : "≥", issue.minimum);
    case "too_big":
      return bound(issue.origin, issue.inclusive === false ? "<" : "≤", issue.maximum);
    case "invalid_value":
      return issue.values.length === 1
        ? JSON.stringify(issue.values[0])
        : `one of ${issue.values.map(String).join(", ")}`;
    case "invalid_format":
      return issue.pattern ? `a string matching ${issue.pattern}` : `a valid ${issue.format}`;
    case "not_multiple_of":
      return `a multiple of ${issue.divisor}`;
    default:
      return "a valid value";
  }
}
