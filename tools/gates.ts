/**
 * The static gates of `deno task test` (= `deno task ok`): format, lint, type
 * check, layering and doc examples. `tests/run.ts` runs each as one test line
 * (`gate fmt ... ok` or `gate fmt ... FAILED` with the output) and counts it
 * in its closing `tests: N passed, M failed`.
 *
 * @module
 */

/**
 * Files whose JSDoc `@example`s do not compile yet, skipped by the `doc`
 * gate until their owners fix them. Everything else under
 * {@linkcode DOC_EXAMPLE_PATHS} (new files included) is checked; widen the
 * gate by deleting entries. An entry ending in `/` is a folder.
 */
export const DOC_EXAMPLES_PENDING: readonly string[] = [];

/** The folders whose JSDoc `@example`s the `doc` gate compiles. */
export const DOC_EXAMPLE_PATHS: readonly string[] = ["src", "tools", "support", "bench"];

/** The folders the `types` gate checks (the README's `deno task check` too). */
export const TYPE_CHECK_PATHS: readonly string[] = [
  "src/",
  "tests/",
  "bench/",
  "support/",
  "tools/",
];

/** One static gate: a command whose exit status is the verdict. */
export interface Gate {
  /** Short name, printed as `gate <name> ...`. */
  name: string;
  /** Arguments to `deno` (the command runs from the repository root). */
  args: string[];
}

/**
 * Whether `path` (repository-relative, `/`-separated) is in `pending`.
 *
 * @example
 * ```ts
 * isPending("src/sinks/file.ts", ["src/sinks/"]); // true
 * isPending("src/core/alert.ts", ["src/sinks/"]); // false
 * ```
 */
export function isPending(path: string, pending: readonly string[]): boolean {
  return pending.some((p) => p.endsWith("/") ? path.startsWith(p) : path === p);
}

/** Every `.ts` file under `dir` of `root`, repository-relative and sorted. */
async function tsFiles(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}/${dir}`)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await tsFiles(root, p));
    else if (e.isFile && p.endsWith(".ts")) out.push(p);
  }
  return out.sort();
}

/**
 * The gates, in the order they run. `root` is the repository root (for the
 * list of files the `doc` gate checks); their paths are relative to it, so
 * they run with it as their working directory.
 *
 * @example
 * ```ts
 * const gates = await staticGates(".");
 * gates.map((g) => g.name); // ["fmt", "lint", "types", "layers", "doc"]
 * ```
 */
export async function staticGates(root: string): Promise<Gate[]> {
  const docFiles: string[] = [];
  for (const dir of DOC_EXAMPLE_PATHS) {
    for (const f of await tsFiles(root, dir)) {
      if (!isPending(f, DOC_EXAMPLES_PENDING)) docFiles.push(f);
    }
  }
  return [
    { name: "fmt", args: ["fmt", "--check"] },
    { name: "lint", args: ["lint"] },
    { name: "types", args: ["check", ...TYPE_CHECK_PATHS] },
    { name: "layers", args: ["run", "-A", "tools/check_layers.ts"] },
    { name: "doc", args: ["check", "--doc", ...docFiles] },
  ];
}
