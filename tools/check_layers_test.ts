import assert from "node:assert/strict";
import {
  ALLOWED,
  checkLayers,
  folderCycles,
  type ImportEdge,
  importsOf,
  isTestCode,
  layerOf,
  scanImports,
} from "./check_layers.ts";

Deno.test("importsOf: static, type-only, re-export, dynamic and worker imports, with their lines", () => {
  const text = [
    'import { a } from "../shared/log.ts";',
    'import type { B } from "./b.ts";',
    'export { c } from "../core/c.ts";',
    'const d = await import("../runtime/d.ts");',
    'new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });',
    'import x from "npm:zod";',
  ].join("\n");
  assert.deepEqual(importsOf("src/serve/m.ts", text), [
    { file: "src/serve/m.ts", line: 1, target: "src/shared/log.ts" },
    { file: "src/serve/m.ts", line: 2, target: "src/serve/b.ts" },
    { file: "src/serve/m.ts", line: 3, target: "src/core/c.ts" },
    { file: "src/serve/m.ts", line: 4, target: "src/runtime/d.ts" },
    { file: "src/serve/m.ts", line: 5, target: "src/serve/worker.ts" },
  ]);
});

Deno.test("importsOf: data files read through import.meta.url are not imports", () => {
  const text = 'const schema = new URL("../../docs/schema.json", import.meta.url);\n' +
    'const fixture = new URL("./testdata/trace.lwt", import.meta.url);';
  assert.deepEqual(importsOf("src/core/a.ts", text), []);
});

Deno.test("importsOf: paths in comments and JSDoc examples are not imports", () => {
  const text = [
    '// import { a } from "../serve/a.ts";',
    "/**",
    " * @example",
    " * ```ts",
    ' * import { b } from "../cli/b.ts";',
    ' * const w = new Worker(new URL("../demo/w.ts", import.meta.url));',
    " * ```",
    " */",
    "const s = \"import('../serve/c.ts')\";",
    'import { d } from "../shared/d.ts";',
  ].join("\n");
  assert.deepEqual(importsOf("src/core/m.ts", text), [
    { file: "src/core/m.ts", line: 10, target: "src/shared/d.ts" },
  ]);
});

Deno.test("scanImports: template-literal import(), import.meta.resolve, import types and multi-line imports", () => {
  const text = [
    "const a = await import(`../serve/a.ts`);",
    'const b = import.meta.resolve("../cli/b.ts");',
    'type C = import("../config/c.ts").C;',
    "import {",
    "  d,",
    '} from "../shared/d.ts";',
  ].join("\n");
  const { edges, problems } = scanImports("src/core/m.ts", text);
  assert.deepEqual(edges.map((e) => [e.line, e.target]), [
    [1, "src/serve/a.ts"],
    [2, "src/cli/b.ts"],
    [3, "src/config/c.ts"],
    [4, "src/shared/d.ts"],
  ]);
  assert.deepEqual(problems, []);
  // and the checker then sees the forbidden edges the old regex missed
  assert.deepEqual(
    checkLayers(edges).map((p) => p.message.split(" (")[0]),
    [
      "src/core/m.ts:1: src/core may not import src/serve",
      "src/core/m.ts:2: src/core may not import src/cli",
      "src/core/m.ts:3: src/core may not import src/config",
    ],
  );
});

Deno.test("scanImports: an import() of a non-literal is reported, it cannot be checked", () => {
  const text = 'const name = "x";\nawait import(`../${name}/m.ts`);\nawait import(name);';
  const { edges, problems } = scanImports("src/cli/m.ts", text);
  assert.deepEqual(edges, []);
  assert.deepEqual(problems.map((p) => p.kind), ["dynamic-import", "dynamic-import"]);
  assert.match(problems[0].message, /^src\/cli\/m\.ts:2: import\(\) of `\.\.\/\$\{name\}\/m\.ts`/);
  assert.match(problems[1].message, /^src\/cli\/m\.ts:3: import\(\) of name: not a literal/);
});

Deno.test("checkLayers: testdata/ is test code: product code may not import it, tests may", () => {
  assert.ok(isTestCode("src/pipeline/testdata/fixtures.ts"));
  assert.ok(!isTestCode("src/pipeline/evaluate.ts"));
  assert.deepEqual(
    checkLayers([
      edge("src/serve/batch_test.ts", 9, "src/pipeline/testdata/fixtures.ts"),
      // test code itself may import below it
      edge("src/pipeline/testdata/fixtures.ts", 2, "src/serve/x.ts"),
    ]),
    [],
  );
  const [p, ...rest] = checkLayers([
    edge("src/pipeline/evaluate.ts", 4, "src/pipeline/testdata/f.ts"),
  ]);
  assert.equal(rest.length, 0);
  assert.equal(p.kind, "test-code");
  assert.match(p.message, /^src\/pipeline\/evaluate\.ts:4: product code may not import test code/);
});

Deno.test("layerOf: src folders, src/main.ts and top folders", () => {
  assert.equal(layerOf("src/serve/pipeline.ts"), "src/serve");
  assert.equal(layerOf("src/core/policy/engine.ts"), "src/core");
  assert.equal(layerOf("src/main.ts"), "src/main.ts");
  assert.equal(layerOf("bench/e2e.ts"), "bench");
  assert.equal(layerOf("tests/helpers/intake.ts"), "tests");
});

const edge = (file: string, line: number, target: string): ImportEdge => ({ file, line, target });

Deno.test("checkLayers: a forbidden edge is reported with file:line; allowed ones are not", () => {
  const problems = checkLayers([
    edge("src/core/a.ts", 3, "src/serve/log.ts"),
    edge("src/serve/b.ts", 7, "src/shared/log.ts"),
  ]);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0].kind, "forbidden");
  assert.match(problems[0].message, /^src\/core\/a\.ts:3: src\/core may not import src\/serve/);
});

Deno.test("checkLayers: test files may import anything; an unknown folder is reported", () => {
  assert.deepEqual(checkLayers([edge("src/core/a_test.ts", 1, "src/serve/x.ts")]), []);
  assert.deepEqual(checkLayers([edge("tests/x.ts", 1, "src/serve/x.ts")]), []);
  const [p] = checkLayers([edge("src/nowhere/x.ts", 2, "src/core/a.ts")]);
  assert.equal(p.kind, "unknown-folder");
  assert.match(p.message, /^src\/nowhere\/x\.ts:2: /);
});

Deno.test("checkLayers: folders that import each other are reported as a cycle", () => {
  // src/sinks → src/config is forbidden and src/config → src/sinks allowed: one cycle
  const problems = checkLayers([
    edge("src/sinks/f.ts", 8, "src/config/monitor.ts"),
    edge("src/config/monitor.ts", 9, "src/sinks/sink.ts"),
  ]);
  assert.deepEqual(problems.map((p) => p.kind).sort(), ["cycle", "forbidden"]);
  const cycle = problems.find((p) => p.kind === "cycle")!;
  assert.match(cycle.message, /src\/config/);
  assert.match(cycle.message, /src\/sinks/);
});

const graph = (edges: [string, string][]): Map<string, Set<string>> => {
  const g = new Map<string, Set<string>>();
  for (const [a, b] of edges) g.set(a, (g.get(a) ?? new Set()).add(b));
  return g;
};

Deno.test("folderCycles: a 2-folder and a 3-folder cycle are found, a chain is not", () => {
  const two = folderCycles(graph([["a", "b"], ["b", "a"], ["b", "c"]]));
  assert.equal(two.length, 1);
  assert.deepEqual(new Set(two[0]), new Set(["a", "b"]));
  assert.equal(two[0][0], two[0].at(-1), "a cycle closes on its first folder");
  const three = folderCycles(graph([["x", "y"], ["y", "z"], ["z", "x"], ["z", "w"]]));
  assert.equal(three.length, 1);
  assert.deepEqual(new Set(three[0]), new Set(["x", "y", "z"]));
  assert.equal(three[0].length, 4);
  assert.deepEqual(folderCycles(graph([["a", "b"], ["b", "c"], ["a", "c"]])), []);
});

Deno.test("folderCycles: two separate cycles are each reported", () => {
  const cycles = folderCycles(graph([["a", "b"], ["b", "a"], ["c", "d"], ["d", "c"]]));
  assert.equal(cycles.length, 2);
});

/**
 * The layer table of docs/architecture.md: rows `| \`layer\` | \`a\`, \`b\` |`
 * (— for nothing) between the markers.
 */
async function documentedLayers(): Promise<Record<string, string[]>> {
  const doc = await Deno.readTextFile(new URL("../docs/architecture.md", import.meta.url));
  const start = doc.indexOf("<!-- layers:start -->");
  const end = doc.indexOf("<!-- layers:end -->");
  assert.ok(start >= 0 && end > start, "docs/architecture.md marks its layer table");
  const out: Record<string, string[]> = {};
  for (const line of doc.slice(start, end).split("\n")) {
    const m = /^\|\s*`([^`]+)`\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    out[m[1]] = [...m[2].matchAll(/`([^`]+)`/g)].map((x) => x[1]);
  }
  return out;
}

Deno.test("docs/architecture.md's layer table is tools/check_layers.ts's ALLOWED", async () => {
  const documented = await documentedLayers();
  const allowed = Object.fromEntries(
    Object.entries(ALLOWED).map(([k, v]) => [k, [...v].sort()]),
  );
  const doc = Object.fromEntries(Object.entries(documented).map(([k, v]) => [k, [...v].sort()]));
  assert.deepEqual(doc, allowed);
  // the same order, lowest layer first
  assert.deepEqual(Object.keys(documented), Object.keys(ALLOWED));
});
