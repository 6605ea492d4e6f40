import assert from "node:assert/strict";
import {
  ALLOWED,
  checkLayers,
  folderCycles,
  type ImportEdge,
  importsOf,
  layerOf,
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
