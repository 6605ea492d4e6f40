/**
 * Sizes a newcomer feels: the largest files and the longest functions of
 * `src/` (tests excluded), read with the TypeScript compiler's parser.
 * `deno run -A tools/code_size.ts [--top N]` prints two tables.
 *
 * @module
 */
import ts from "typescript";
import { join } from "node:path";

/** One function, method, or arrow/function expression bound to a name. */
export interface FunctionSize {
  file: string;
  name: string;
  line: number;
  lines: number;
}

/**
 * Every named function in `text` with its length in lines.
 *
 * @example
 * ```ts
 * const [f] = functionSizes("a.ts", "function f() {\n  return 1;\n}\n");
 * // { file: "a.ts", name: "f", line: 1, lines: 3 }
 * ```
 */
export function functionSizes(file: string, text: string): FunctionSize[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: FunctionSize[] = [];
  const lineOf = (pos: number) => sf.getLineAndCharacterOfPosition(pos).line + 1;
  const nameOf = (node: ts.Node): string | undefined => {
    if (
      (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) ||
        ts.isGetAccessor(node) || ts.isSetAccessor(node)) && node.name
    ) return node.name.getText(sf);
    if (ts.isConstructorDeclaration(node)) return "constructor";
    if ((ts.isArrowFunction(node) || ts.isFunctionExpression(node))) {
      const p = node.parent;
      if (
        ts.isVariableDeclaration(p) || ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)
      ) {
        return p.name.getText(sf);
      }
    }
    return undefined;
  };
  const visit = (node: ts.Node) => {
    const name = nameOf(node);
    if (name !== undefined) {
      const start = lineOf(node.getStart(sf));
      out.push({ file, name, line: start, lines: lineOf(node.getEnd()) - start + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory && e.name !== "testdata") yield* sources(p);
    else if (e.isFile && p.endsWith(".ts") && !p.endsWith("_test.ts")) yield p;
  }
}

if (import.meta.main) {
  const top = Number(Deno.args[Deno.args.indexOf("--top") + 1]) || 15;
  const files: { file: string; lines: number }[] = [];
  const fns: FunctionSize[] = [];
  for await (const f of sources("src")) {
    const text = await Deno.readTextFile(f);
    files.push({ file: f, lines: text.split("\n").length - 1 });
    fns.push(...functionSizes(f, text));
  }
  files.sort((a, b) => b.lines - a.lines);
  fns.sort((a, b) => b.lines - a.lines);
  console.log(`| file | lines |\n|---|---:|`);
  for (const f of files.slice(0, top)) console.log(`| ${f.file} | ${f.lines} |`);
  console.log(`\n| function | lines |\n|---|---:|`);
  for (const f of fns.slice(0, top)) console.log(`| ${f.file}:${f.line} ${f.name} | ${f.lines} |`);
  const over = files.filter((f) => f.lines > 400).length;
  console.log(
    `\n${files.length} files, ${over} over 400 lines; median ${files[files.length >> 1].lines}`,
  );
}
