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
import { ConfigError } from "./errors.ts";
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

// what config schemas and their validation need, from one import as before
export {
  choiceOf,
  type ChoiceOptions,
  describeValue,
  expectMessage,
  isMapping,
} from "../shared/schema.ts";
export { duplicateIds, validateYaml, zodIssuesToConfig } from "./zod_issues.ts";
