/**
 * YAML text → plain value, keeping where every node came from, and zod
 * validation whose issues point at `file:line:col` in that text.
 *
 * A {@linkcode YamlSource} answers "where is `rules[2].when.latent`?" with
 * the 1-based line and column a person sees in their editor. Syntax errors
 * and schema violations become one {@linkcode ConfigError} listing every
 * problem in the file.
 *
 * @module
 */
import {
  type Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  Parser,
  visit,
  type YAMLError,
} from "yaml";
import { z as zod } from "zod";
import type { z } from "zod";
import { ConfigError, type ConfigIssue } from "./errors.ts";
import { DEFAULT_POLICY_LIMITS } from "../core/policy/limits.ts";

/** A 1-based line and column. */
export interface Position {
  line: number;
  col: number;
}

/** A path into a parsed YAML value: mapping keys and list indices. */
export type YamlPath = readonly (string | number)[];

/** Which part of a mapping entry {@linkcode YamlSource.locate} points at. */
export type LocateAt = "value" | "key";

/** Parsed YAML with positions. */
export interface YamlSource {
  /** The file name used in error messages. */
  readonly file: string;
  /** The document as plain JavaScript (mappings → objects, sequences → arrays). */
  readonly value: unknown;
  /**
   * Position of the node at `path`. For a mapping entry this is its value
   * (or its key when `at` is `"key"`, or when the value is empty). When the
   * exact node does not exist, the nearest existing ancestor is returned, so
   * a missing key points at the mapping that lacks it.
   */
  locate(path: YamlPath, at?: LocateAt): Position;
}

/** Limits {@linkcode parseYamlSource} checks before building the document. */
export interface YamlLimits {
  /** Nesting depth: a mapping or list inside another is one level more; the top level is 1 (default 64). */
  depth?: number;
  /** Characters of text (default 8 MiB). */
  bytes?: number;
}

/**
 * Parse YAML `text` read from `file`. Throws {@linkcode ConfigError} listing
 * every syntax error (duplicate keys included) with its line and column.
 * Text beyond `limits` (size, nesting depth; defaults in
 * `src/core/policy/limits.ts`) is refused before the document is built, at
 * the first place past the limit: the YAML library and the validators recurse
 * once per level, so deep nesting would otherwise overflow the stack.
 *
 * @example
 * ```ts
 * const src = parseYamlSource("version: 1\nrules:\n  - id: a\n", "p.yaml");
 * src.value; // { version: 1, rules: [{ id: "a" }] }
 * src.locate(["rules", 0, "id"]); // { line: 3, col: 9 }
 * src.locate(["rules", 0, "title"]); // { line: 3, col: 5 } (the mapping lacking it)
 * ```
 */
export function parseYamlSource(text: string, file: string, limits: YamlLimits = {}): YamlSource {
  const maxDepth = limits.depth ?? DEFAULT_POLICY_LIMITS.depth;
  const maxBytes = limits.bytes ?? DEFAULT_POLICY_LIMITS.fileBytes;
  if (text.length > maxBytes) {
    throw ConfigError.at(
      file,
      1,
      1,
      `expected a file of at most ${maxBytes} bytes (limit fileBytes), found ${text.length}`,
    );
  }
  const lineCounter = new LineCounter();
  const pos = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(Math.max(0, Math.min(offset, text.length)));
    return { line, col };
  };
  const deep = (offset: number, found: string) => {
    const before = text.slice(0, offset);
    const line = before.split("\n").length;
    return ConfigError.at(
      file,
      line,
      offset - (before.lastIndexOf("\n") + 1) + 1,
      `expected YAML nested at most ${maxDepth} levels deep (limit depth), found ${found}`,
    );
  };
  const tooDeep = deepestCollection(text, maxDepth);
  if (tooDeep !== undefined) throw deep(tooDeep, `a mapping or list at level ${maxDepth + 1}`);
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => {
      const opened = unclosedOpening(doc, e);
      if (opened) return { file, ...pos(opened.offset), reason: opened.reason };
      return {
        file,
        ...pos(skipBlanks(text, e.pos[0])),
        reason: `invalid YAML: ${yamlReason(e.message)}`,
      };
    }));
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw ConfigError.at(file, 1, 1, `invalid YAML: ${(err as Error).message}`);
  }
  // aliases can nest what the text does not
  const depth = valueDepth(value, maxDepth);
  if (depth > maxDepth) throw deep(0, `${depth} levels once its aliases are expanded`);
  return {
    file,
    value,
    locate: (path, at = "value") => pos(locateOffset(doc, path, at)),
  };
}

/**
 * Offset of the first mapping or list nested deeper than `max` in `text`,
 * from the YAML library's syntax tree (built without recursion), or
 * `undefined` when there is none.
 */
function deepestCollection(text: string, max: number): number | undefined {
  type Tok = {
    type: string;
    offset: number;
    value?: Tok;
    items?: { key?: Tok | null; value?: Tok }[];
  };
  const stack: [Tok | null | undefined, number][] = [];
  try {
    for (const tok of new Parser().parse(text)) stack.push([tok as Tok, 0]);
  } catch {
    return 0; // the tokenizer gave up: too deep or too odd to build at all
  }
  stack.reverse();
  while (stack.length > 0) {
    const [tok, level] = stack.pop()!;
    if (!tok) continue;
    if (tok.type === "document") {
      stack.push([tok.value, level]);
    } else if (
      tok.type === "block-map" || tok.type === "block-seq" || tok.type === "flow-collection"
    ) {
      if (level + 1 > max) return tok.offset;
      for (let i = (tok.items ?? []).length - 1; i >= 0; i--) {
        const item = tok.items![i];
        stack.push([item.value, level + 1], [item.key, level + 1]);
      }
    }
  }
  return undefined;
}

/** Nesting depth of a plain value (mappings and lists), without recursion; stops past `max`. */
function valueDepth(value: unknown, max: number): number {
  let deepest = 0;
  const seen = new Map<object, number>();
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, level] = stack.pop()!;
    if (v === null || typeof v !== "object" || v instanceof Date) continue;
    // shared by aliases: walk again only when reached deeper
    if ((seen.get(v) ?? 0) >= level) continue;
    seen.set(v, level);
    deepest = Math.max(deepest, level);
    if (deepest > max) return deepest;
    for (const x of Array.isArray(v) ? v : Object.values(v)) stack.push([x, level + 1]);
  }
  return deepest;
}

/**
 * Read and parse a YAML file. A file that cannot be read is reported as a
 * {@linkcode ConfigError} at `path:1:1` like any other problem with it.
 *
 * @example
 * ```ts
 * const src = await loadYamlSource("monitors/demo.yaml");
 * ```
 */
export async function loadYamlSource(path: string, limits: YamlLimits = {}): Promise<YamlSource> {
  let text: string;
  const maxBytes = limits.bytes ?? DEFAULT_POLICY_LIMITS.fileBytes;
  try {
    // a FIFO, a device or a folder is refused before it is opened: opening a
    // FIFO waits for a writer, and /dev/zero never ends
    const info = await Deno.stat(path);
    if (!info.isFile) {
      throw ConfigError.at(path, 1, 1, `expected a regular file, found ${fileKind(info)}`);
    }
    const tooBig = (found: string) =>
      ConfigError.at(
        path,
        1,
        1,
        `expected a file of at most ${maxBytes} bytes (limit fileBytes), found ${found}`,
      );
    if (info.size > maxBytes) throw tooBig(String(info.size));
    // read at most maxBytes + 1 bytes whatever the size said (a file that grows meanwhile)
    using file = await Deno.open(path, { read: true });
    const buf = new Uint8Array(Math.min(maxBytes + 1, Math.max(info.size + 1, 64 * 1024)));
    let got = 0;
    let chunk = buf;
    for (;;) {
      if (got === chunk.length) {
        if (chunk.length > maxBytes) break;
        const bigger = new Uint8Array(Math.min(maxBytes + 1, chunk.length * 2));
        bigger.set(chunk);
        chunk = bigger;
      }
      const n = await file.read(chunk.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got > maxBytes) throw tooBig(`more than ${maxBytes}`);
    text = new TextDecoder().decode(chunk.subarray(0, got));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    throw ConfigError.at(path, 1, 1, `cannot read file: ${why}`);
  }
  return parseYamlSource(text, path, limits);
}

/** What a path that is not a regular file is, for an error message. */
function fileKind(info: Deno.FileInfo): string {
  if (info.isDirectory) return "a directory";
  if (info.isFifo) return "a FIFO (named pipe)";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/**
 * A zod `error` option that says what was expected and what was found, with
 * an optional explanation, for custom checks in config schemas.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * z.number().min(0, { error: expectMessage("a number ≥ 0", "negative thresholds fire on every token") });
 * // "expected a number ≥ 0, found -1; negative thresholds fire on every token"
 * ```
 */
export function expectMessage(
  expected: string,
  why?: string,
): (iss: { input?: unknown }) => string | undefined {
  // A missing key (no input) falls through to the default "missing required key" message.
  return (iss) =>
    iss.input === undefined
      ? undefined
      : `expected ${expected}, found ${describeValue(iss.input)}${why ? `; ${why}` : ""}`;
}

/**
 * The yaml library reports an unclosed quoted string or flow collection
 * (`"...`, `[...`, `{...`) where the input or the block ends; a person wants
 * the character that opened it. Returns that offset and a reason, or
 * `undefined` for other errors.
 */
function unclosedOpening(
  doc: Document,
  err: YAMLError,
): { offset: number; reason: string } | undefined {
  const quote = err.code === "MISSING_CHAR" && /quote/i.test(err.message);
  const flow = /^Flow (sequence|map)/.test(err.message);
  if (!quote && !flow) return undefined;
  const at = err.pos[0];
  let best: { offset: number; reason: string } | undefined;
  const consider = (range: Node["range"], reason: string) => {
    if (!range || range[0] >= at || at > range[2]) return;
    if (best === undefined || range[0] > best.offset) best = { offset: range[0], reason };
  };
  visit(doc, {
    Scalar(_, node) {
      if (quote && (node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE")) {
        consider(node.range, "invalid YAML: this quoted string is never closed");
      }
    },
    Seq(_, node) {
      if (flow && node.flow) consider(node.range, "invalid YAML: this '[' is never closed by ']'");
    },
    Map(_, node) {
      if (flow && node.flow) consider(node.range, "invalid YAML: this '{' is never closed by '}'");
    },
  });
  return best;
}

/** Move past spaces and tabs, so an error points at text rather than at indentation. */
function skipBlanks(text: string, offset: number): number {
  while (offset < text.length && (text[offset] === " " || text[offset] === "\t")) offset++;
  return offset;
}

/** First line of a yaml-library message, without its trailing period. */
function yamlReason(message: string): string {
  return message.split("\n")[0].replace(/\.$/, "");
}

function startOf(node: Node | null | undefined): number | undefined {
  const range = node?.range;
  if (!range) return undefined;
  // An empty value (`key:` with nothing after it) has a zero-width range that
  // sits on the next line; it is not somewhere a person can point at.
  if (range[0] === range[1] && isScalar(node) && node.value === null) return undefined;
  return range[0];
}

function locateOffset(doc: Document, path: YamlPath, at: LocateAt): number {
  let node: unknown = doc.contents;
  let best = startOf(doc.contents as Node | null) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return best;
      const keyStart = startOf(pair.key as Node);
      const valueStart = startOf(pair.value as Node | null);
      if (last && at === "key") return keyStart ?? best;
      best = valueStart ?? keyStart ?? best;
      if (valueStart === undefined) return best;
      node = pair.value;
    } else if (isSeq(node)) {
      const item = typeof seg === "number" ? node.items[seg] : undefined;
      const start = startOf(item as Node | undefined);
      if (start === undefined) return best;
      best = start;
      node = item;
    } else {
      return best;
    }
  }
  return best;
}

/** Marks the error message of a {@linkcode choiceOf} union: the marker, then its registry key. */
const CHOICE = "\u0001choice:";

/** How to report a failed {@linkcode choiceOf} union. */
export interface ChoiceOptions {
  /** What the value should have been, e.g. `"a condition: {all: [...]}, {any: [...]}, ..."`. */
  expected: string;
  /**
   * Which option the author meant, from the value as written (usually by the
   * keys of a mapping), or -1 when no option is recognisable: then the error
   * is `expected <expected>, found <value>` at the value.
   */
  choose: (value: unknown) => number;
  /** Keys that pick an option, for a "did you mean" hint when a mapping has none of them. */
  keys?: readonly string[];
}

const choices: ChoiceOptions[] = [];

/**
 * A union whose failures are reported as the author sees them: the option
 * they meant (chosen by `opts.choose` from the value) and that option's own
 * problems at their own positions, instead of zod's "invalid input" over
 * every option. Plain `z.union` underneath, so JSON Schema generation sees an
 * `anyOf`.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * const Pool = choiceOf([z.literal("token"), z.strictObject({ max: z.int() })], {
 *   expected: "token or {max: N}",
 *   choose: (v) => typeof v === "string" ? 0 : isMapping(v) && "max" in v ? 1 : -1,
 * });
 * ```
 */
export function choiceOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(
  options: T,
  opts: ChoiceOptions,
): z.ZodUnion<T> {
  const key = choices.push(opts) - 1;
  return zod.union(options, { error: () => `${CHOICE}${key}` });
}

/**
 * Whether `v` is a YAML mapping (a plain object, not a list or a scalar).
 *
 * @example
 * ```ts
 * isMapping({ a: 1 }); // true
 * isMapping([1]); // false
 * ```
 */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

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
    if (issue.code === "invalid_union" && issue.message.startsWith(CHOICE)) {
      const choice = choices[Number(issue.message.slice(CHOICE.length))];
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

/**
 * Describe a YAML value for an error message, e.g. `the string "hgh"`,
 * `-1`, `a list of 3 item(s)`, `an empty value`.
 *
 * @example
 * ```ts
 * describeValue("2.0"); // 'the string "2.0"'
 * describeValue(null); // "an empty value"
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing (the key is missing)";
  if (value === null) return "an empty value";
  if (typeof value === "string") {
    const s = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `the string ${JSON.stringify(s)}`;
  }
  if (typeof value === "number") {
    if (Number.isNaN(value)) return ".nan";
    if (!Number.isFinite(value)) return value > 0 ? ".inf" : "-.inf";
    return String(value);
  }
  if (typeof value === "boolean") return `the boolean ${value}`;
  if (Array.isArray(value)) return `a list of ${value.length} item(s)`;
  if (value instanceof Date) return `the date ${value.toISOString()}`;
  if (typeof value === "object") return "a mapping";
  return String(value);
}
