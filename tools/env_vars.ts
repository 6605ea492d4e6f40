/**
 * Find every environment read in the code, so `docs/environment.md` can be
 * checked against it (`tools/env_vars_test.ts`). Reads by name:
 * `Deno.env.get("X")`/`has("X")`, an injected lookup `env("X")`,
 * `process.env.X`, and Python's `os.environ.get("X")`, `os.environ["X"]`,
 * `os.getenv("X")`. Reads whose name is computed (`Deno.env.get(name)`,
 * `Deno.env.toObject()`) are reported per file: the table lists them by the
 * configuration key that names the variable. Comment lines (JSDoc examples)
 * are skipped.
 *
 * `deno run -A tools/env_vars.ts` (from the repository root) prints each
 * name with the files that read it, then what `docs/environment.md` misses
 * (exit 1 when it misses something).
 *
 * @module
 */
import { join, relative } from "node:path";

/** One environment read found in a source file. */
export interface EnvRead {
  /** The variable's name, or null when the code computes it. */
  name: string | null;
  /** The file, relative to the scanned root. */
  file: string;
  line: number;
}

const NAMED_READS = [
  /Deno\.env\.(?:get|has)\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\)/g,
  /\benv\??\.?\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\)/g,
  /process\.env(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\])/g,
  /os\.environ(?:\.get\(\s*|\[\s*)["']([A-Za-z_][A-Za-z0-9_]*)["']/g,
  /os\.getenv\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']/g,
];
const COMPUTED_READS = [
  /Deno\.env\.(?:get|has)\(\s*[^"'\s)]/g,
  /Deno\.env\.toObject\(/g,
  /process\.env\[\s*[^"'\s\]]/g,
  /os\.environ\.get\(\s*[^"'\s)]/g,
];

function isComment(line: string): boolean {
  const t = line.trimStart();
  return t.startsWith("*") || t.startsWith("//") || t.startsWith("/*") || t.startsWith("#");
}

/**
 * The environment reads in one source text.
 *
 * @example
 * ```ts
 * import { envReadsIn } from "./env_vars.ts";
 * const reads = envReadsIn("a.ts", 'const a = Deno.env.get("A");\nconst b = Deno.env.get(key);\n');
 * // [{ name: "A", file: "a.ts", line: 1 }, { name: null, file: "a.ts", line: 2 }]
 * console.assert(reads.length === 2 && reads[1].name === null);
 * ```
 */
export function envReadsIn(file: string, text: string): EnvRead[] {
  const reads: EnvRead[] = [];
  text.split("\n").forEach((line, i) => {
    if (isComment(line)) return;
    for (const re of NAMED_READS) {
      for (const m of line.matchAll(re)) {
        reads.push({ name: m[1] ?? m[2], file, line: i + 1 });
      }
    }
    for (const re of COMPUTED_READS) {
      for (const _ of line.matchAll(re)) reads.push({ name: null, file, line: i + 1 });
    }
  });
  return reads;
}

/** Options for {@link scanEnvReads}. */
export interface ScanEnvReadsOptions {
  /** The repository root. */
  root: string;
  /** Folders under `root` to scan (`.ts` and `.py` files; `node_modules` skipped). */
  folders: string[];
}

/**
 * Every environment read under the given folders.
 *
 * @example
 * ```ts
 * import { scanEnvReads } from "./env_vars.ts";
 * const reads = scanEnvReads({ root: ".", folders: ["src"] });
 * console.assert(reads.some((r) => r.name === "LATENTWATCH_DEBUG"));
 * ```
 */
export function scanEnvReads(options: ScanEnvReadsOptions): EnvRead[] {
  const reads: EnvRead[] = [];
  const walk = (dir: string) => {
    for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory && entry.name !== "node_modules" && !entry.name.startsWith(".")) {
        walk(path);
      } else if (entry.isFile && /\.(ts|py)$/.test(entry.name)) {
        reads.push(...envReadsIn(relative(options.root, path), Deno.readTextFileSync(path)));
      }
    }
  };
  for (const folder of options.folders) walk(join(options.root, folder));
  return reads;
}

/** One row of the environment table: the variables it names and the files it says read them. */
export interface EnvTableRow {
  /** Variable names in the first cell; empty for a row "named by" a configuration key. */
  names: string[];
  /** The files of the "read by" cell. */
  files: string[];
  line: number;
}

const codeSpans = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);

/**
 * The rows of the tables in a markdown page whose second column is "read by".
 *
 * @example
 * ```ts
 * import { parseEnvTable } from "./env_vars.ts";
 * const rows = parseEnvTable(
 *   "| variable | read by | what | default |\n| - | - | - | - |\n| `A`, `B` | `x.ts` | … | — |\n",
 * );
 * // [{ names: ["A", "B"], files: ["x.ts"], line: 3 }]
 * console.assert(rows[0].names.length === 2 && rows[0].line === 3);
 * ```
 */
export function parseEnvTable(markdown: string): EnvTableRow[] {
  const rows: EnvTableRow[] = [];
  let inTable = false;
  markdown.split("\n").forEach((line, i) => {
    if (!line.startsWith("|")) {
      inTable = false;
      return;
    }
    const cells = line.slice(1, line.lastIndexOf("|")).split("|").map((c) => c.trim());
    if (/^read by$/i.test(cells[1] ?? "")) {
      inTable = true;
      return;
    }
    if (!inTable || /^-+$/.test(cells[0])) return;
    const names = /^named by\b/.test(cells[0])
      ? []
      : codeSpans(cells[0]).filter((n) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(n));
    const files = codeSpans(cells[1]).filter((f) => /\.(ts|py)$/.test(f));
    rows.push({ names, files, line: i + 1 });
  });
  return rows;
}

/**
 * What the table gets wrong about the reads: a variable or a computed read
 * it misses, or a row naming a file that does not read its variable.
 *
 * @example
 * ```ts
 * import { envTableProblems } from "./env_vars.ts";
 * const problems = envTableProblems(
 *   [{ name: "A", file: "x.ts", line: 4 }],
 *   [{ names: ["A"], files: ["y.ts"], line: 9 }],
 * );
 * // ["x.ts:4: reads A, but the table's row for A (line 9) does not list x.ts", "line 9: …"]
 * console.assert(problems.length === 2);
 * ```
 */
export function envTableProblems(reads: EnvRead[], rows: EnvTableRow[]): string[] {
  const problems: string[] = [];
  const rowOf = new Map<string, EnvTableRow>();
  for (const row of rows) for (const name of row.names) rowOf.set(name, row);
  const readers = new Map<string, Set<string>>();
  const computedFiles = new Set<string>();
  for (const r of reads) {
    if (r.name === null) {
      computedFiles.add(r.file);
      if (!rows.some((row) => row.files.includes(r.file))) {
        problems.push(
          `${r.file}:${r.line}: reads a variable whose name it computes, but no row lists ${r.file}`,
        );
      }
      continue;
    }
    readers.set(r.name, (readers.get(r.name) ?? new Set()).add(r.file));
    const row = rowOf.get(r.name);
    if (!row) problems.push(`${r.file}:${r.line}: reads ${r.name}, which the table does not list`);
    else if (!row.files.includes(r.file)) {
      problems.push(
        `${r.file}:${r.line}: reads ${r.name}, but the table's row for ${r.name} ` +
          `(line ${row.line}) does not list ${r.file}`,
      );
    }
  }
  for (const row of rows) {
    for (const file of row.files) {
      const stale = row.names.length > 0
        ? row.names.filter((n) => !readers.get(n)?.has(file))
        : (computedFiles.has(file) ? [] : ["a variable named by configuration"]);
      for (const what of stale) {
        problems.push(`line ${row.line}: lists ${file} as reading ${what}, but it does not`);
      }
    }
  }
  return [...new Set(problems)];
}

/** The folders the environment table covers. */
export const ENV_SCAN_FOLDERS: readonly string[] = [
  "src",
  "bench",
  "tests",
  "tools",
  "support",
  "deploy",
];

if (import.meta.main) {
  const reads = scanEnvReads({ root: Deno.cwd(), folders: [...ENV_SCAN_FOLDERS] });
  const byName = new Map<string, Set<string>>();
  for (const r of reads) {
    const key = r.name ?? "(computed)";
    byName.set(key, (byName.get(key) ?? new Set()).add(r.file));
  }
  for (const [name, files] of [...byName].sort()) console.log(`${name}\t${[...files].join(", ")}`);
  const problems = envTableProblems(
    reads,
    parseEnvTable(Deno.readTextFileSync(join(Deno.cwd(), "docs", "environment.md"))),
  );
  for (const p of problems) console.error(`docs/environment.md: ${p}`);
  if (problems.length > 0) Deno.exit(1);
}
