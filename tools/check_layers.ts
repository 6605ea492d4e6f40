/**
 * The layering check of `deno task ok`: every import between folders of
 * `src/` (and from `bench/`) must follow the table in docs/architecture.md,
 * and no folder may import a folder that imports it back (directly or round
 * a longer loop). Imports are read with the TypeScript parser (static,
 * type-only, re-exports, `import("…")` calls and `import("…")` types,
 * `import.meta.resolve("…")`, `new URL("…", import.meta.url)` for workers),
 * so type-only edges count too and paths in comments do not; an `import()`
 * whose argument is not a literal is reported, since it cannot be checked.
 * Files under a `testdata/` folder are test code: only `*_test.ts` files
 * and other test code may import them.
 *
 * `deno run -A tools/check_layers.ts [--graph]` prints each violation as
 * `file:line: <from> may not import <to> (allowed: …)`, then the folder
 * cycles, and exits 1 when there is either; `--graph` prints the folder graph.
 *
 * @module
 */
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** What the outermost layers (the demo, the CLI; benches too) may import. */
const APPLICATION = [
  "src/core",
  "src/formats",
  "src/runtime",
  "src/bus",
  "src/sinks",
  "src/config",
  "src/pipeline",
  "src/traces",
  "src/tap",
  "src/serve",
  "src/workbench",
  "src/shared",
] as const;

/**
 * Which folders each folder may import (besides itself). The order is the
 * layering, lowest first; docs/architecture.md has the same table.
 */
export const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  // deno.json: the version (src/shared/version.ts)
  "src/shared": ["deno.json"],
  "src/core": ["src/shared"],
  "src/formats": ["src/core", "src/shared"],
  "src/runtime": ["src/core", "src/formats", "src/shared"],
  "src/bus": ["src/core", "src/shared"],
  "src/sinks": ["src/core", "src/bus", "src/shared"],
  "src/config": ["src/core", "src/formats", "src/runtime", "src/sinks", "src/shared"],
  "src/pipeline": ["src/core", "src/formats", "src/runtime", "src/shared"],
  "src/traces": [
    "src/core",
    "src/formats",
    "src/runtime",
    "src/config",
    "src/pipeline",
    "src/shared",
  ],
  "src/tap": ["src/core", "src/bus", "src/shared"],
  "src/workbench": [
    "src/core",
    "src/formats",
    "src/runtime",
    "src/config",
    "src/pipeline",
    "src/traces",
    "src/shared",
  ],
  "src/serve": [
    "src/core",
    "src/formats",
    "src/runtime",
    "src/bus",
    "src/sinks",
    "src/config",
    "src/pipeline",
    "src/traces",
    "src/workbench",
    "src/shared",
  ],
  "src/demo": APPLICATION,
  "src/cli": APPLICATION,
  "src/main.ts": ["src/cli", "src/demo", "src/shared"],
  // benches use the product and their own helpers, never test code
  "bench": [...APPLICATION, "src/demo", "support"],
  // what tests and benches share (a PyTorch model fixture, finding python3 with torch)
  "support": [
    "src/core",
    "src/formats",
    "src/runtime",
    "src/bus",
    "src/config",
    "src/serve",
    "src/shared",
  ],
};

/** One import of one file. */
export interface ImportEdge {
  file: string;
  line: number;
  target: string;
}

/** A broken rule: a forbidden edge, an import that cannot be checked, or a folder cycle. */
export interface LayerViolation {
  kind: "forbidden" | "unknown-folder" | "cycle" | "dynamic-import" | "test-code";
  message: string;
}

/** What {@linkcode scanImports} finds in one file. */
export interface ScannedImports {
  edges: ImportEdge[];
  /** `import()` calls whose argument is not a literal (`dynamic-import`). */
  problems: LayerViolation[];
}

/** The text of a string literal or a template literal without substitutions, else undefined. */
function literalText(node: ts.Node | undefined): string | undefined {
  if (node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node))) {
    return node.text;
  }
  return undefined;
}

/** `import.meta.url` */
function isImportMetaUrl(node: ts.Node | undefined): boolean {
  return !!node && ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) &&
    node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && node.name.text === "url";
}

/** `import.meta.resolve` */
function isImportMetaResolve(node: ts.Node): boolean {
  return ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) &&
    node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && node.name.text === "resolve";
}

/**
 * The relative imports of the file at `file` (repository-relative), parsed
 * from `text` with the TypeScript parser and each resolved to a
 * repository-relative path: import and export declarations, `import()`
 * calls and types, `import.meta.resolve`, and `new URL(…, import.meta.url)`
 * of code (`.ts`, `.js`, `.mjs`: data files read that way are not imports).
 * An `import()` of anything but a literal is a problem.
 *
 * @example
 * ```ts
 * import { scanImports } from "./check_layers.ts";
 * const { edges, problems } = scanImports("src/core/a.ts", "await import(`../${x}.ts`);");
 * // edges: [], problems: [{ kind: "dynamic-import", message: "src/core/a.ts:1: ..." }]
 * ```
 */
export function scanImports(file: string, text: string): ScannedImports {
  const edges: ImportEdge[] = [];
  const problems: LayerViolation[] = [];
  const dir = file.split("/").slice(0, -1).join("/");
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const lineOf = (node: ts.Node) => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
  const add = (node: ts.Node, specifier: string | undefined, codeOnly = false) => {
    if (specifier === undefined || !/^\.{1,2}\//.test(specifier)) return;
    const target = join(dir, specifier).replaceAll("\\", "/");
    // data files read through import.meta.url (JSON schemas, fixtures) are not code
    if (codeOnly && !/\.(ts|js|mjs)$/.test(target)) return;
    edges.push({ file, line: lineOf(node), target });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      add(node, literalText(node.moduleSpecifier));
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      add(node, ts.isLiteralTypeNode(arg) ? literalText(arg.literal) : undefined);
    } else if (ts.isCallExpression(node)) {
      if (node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        const spec = literalText(node.arguments[0]);
        if (spec === undefined) {
          problems.push({
            kind: "dynamic-import",
            message: `${file}:${lineOf(node)}: import() of ${
              node.arguments[0]?.getText(sf) ?? "nothing"
            }: not a literal, so its layer cannot be checked`,
          });
        } else add(node, spec);
      } else if (isImportMetaResolve(node.expression)) {
        add(node, literalText(node.arguments[0]));
      }
    } else if (
      ts.isNewExpression(node) && ts.isIdentifier(node.expression) &&
      node.expression.text === "URL" && isImportMetaUrl(node.arguments?.[1])
    ) {
      add(node, literalText(node.arguments?.[0]), true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return { edges, problems };
}

/**
 * The relative imports of `file` ({@linkcode scanImports}' edges).
 *
 * @example
 * ```ts
 * import { importsOf } from "./check_layers.ts";
 * const edges = importsOf("src/core/a.ts", 'import { b } from "../shared/log.ts";');
 * // [{ file: "src/core/a.ts", line: 1, target: "src/shared/log.ts" }]
 * ```
 */
export function importsOf(file: string, text: string): ImportEdge[] {
  return scanImports(file, text).edges;
}

/** Whether `path` is test code: a `*_test.ts`, under `tests/`, or under a `testdata/` folder. */
export function isTestCode(path: string): boolean {
  return /_test\.ts$/.test(path) || path.startsWith("tests/") || /(^|\/)testdata\//.test(path);
}

/**
 * The layer (folder) a repository-relative path belongs to: `src/<folder>`,
 * `src/main.ts`, or the top folder (`bench`, `tests`, `tools`).
 *
 * @example
 * ```ts
 * layerOf("src/serve/pipeline.ts"); // "src/serve"
 * ```
 */
export function layerOf(path: string): string {
  const parts = path.split("/");
  if (parts[0] === "src") return parts.length === 2 ? path : `src/${parts[1]}`;
  return parts[0];
}

/**
 * Check `edges` against {@linkcode ALLOWED} and look for folder cycles.
 * Test code ({@linkcode isTestCode}: `*_test.ts`, `tests/`, `testdata/`)
 * may import anything below it, so only product and bench files are
 * checked; one of those importing test code (under `testdata/`) is a
 * `test-code` violation.
 *
 * @example
 * ```ts
 * const problems = checkLayers([{ file: "src/core/a.ts", line: 3, target: "src/serve/log.ts" }]);
 * // [{ kind: "forbidden", message: "src/core/a.ts:3: src/core may not import src/serve ..." }]
 * ```
 */
export function checkLayers(edges: readonly ImportEdge[]): LayerViolation[] {
  const problems: LayerViolation[] = [];
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (isTestCode(e.file)) continue;
    if (/(^|\/)testdata\//.test(e.target)) {
      problems.push({
        kind: "test-code",
        message: `${e.file}:${e.line}: product code may not import test code (${e.target}); ` +
          "only *_test.ts files may",
      });
      continue;
    }
    const from = layerOf(e.file);
    const to = layerOf(e.target);
    if (from === to) continue;
    const allowed = ALLOWED[from];
    if (!allowed) {
      problems.push({
        kind: "unknown-folder",
        message: `${e.file}:${e.line}: ${from} is not in the layer table (tools/check_layers.ts)`,
      });
      continue;
    }
    if (!graph.has(from)) graph.set(from, new Set());
    graph.get(from)!.add(to);
    if (!allowed.includes(to)) {
      problems.push({
        kind: "forbidden",
        message: `${e.file}:${e.line}: ${from} may not import ${to} (${e.target}); allowed: ${
          allowed.join(", ") || "nothing"
        }`,
      });
    }
  }
  for (const cycle of folderCycles(graph)) {
    problems.push({
      kind: "cycle",
      message: `folders that import each other round a loop: ${cycle.slice(0, -1).join(", ")}`,
    });
  }
  return problems;
}

/** Each elementary loop of strongly connected folders, reported once per component. */
export function folderCycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  // Tarjan's strongly connected components, iteratively small enough: folders are few
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1) out.push([...comp.reverse(), comp[0]]);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

/** Every `.ts` file under `dir` (repository-relative). */
async function tsFiles(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(root, dir))) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory && e.name !== "node_modules") {
      out.push(...await tsFiles(root, p));
    } else if (e.isFile && p.endsWith(".ts")) out.push(p);
  }
  return out;
}

if (import.meta.main) {
  const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
  const files = [
    ...await tsFiles(root, "src"),
    ...await tsFiles(root, "bench"),
    ...await tsFiles(root, "support"),
  ];
  const edges: ImportEdge[] = [];
  const unreadable: LayerViolation[] = [];
  for (const f of files) {
    const scanned = scanImports(f, await Deno.readTextFile(join(root, f)));
    edges.push(...scanned.edges);
    unreadable.push(...scanned.problems);
  }
  if (Deno.args.includes("--graph")) {
    const g = new Map<string, Set<string>>();
    for (const e of edges) {
      if (isTestCode(e.file)) continue;
      const a = layerOf(e.file);
      const b = layerOf(e.target);
      if (a !== b) g.set(a, (g.get(a) ?? new Set()).add(b));
    }
    for (const [k, v] of [...g].sort()) console.log(`${k} → ${[...v].sort().join(", ")}`);
  }
  const problems = [...unreadable, ...checkLayers(edges)];
  for (const p of problems) console.log(p.message);
  const cycles = problems.filter((p) => p.kind === "cycle").length;
  console.log(
    `layers: ${files.length} files, ${edges.length} relative imports, ` +
      `${problems.length - cycles} forbidden, ${cycles} folder cycles (${
        relative(Deno.cwd(), root) || "."
      })`,
  );
  if (problems.length > 0) Deno.exit(1);
}
