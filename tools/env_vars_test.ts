import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ENV_SCAN_FOLDERS,
  envReadsIn,
  envTableProblems,
  parseEnvTable,
  scanEnvReads,
} from "./env_vars.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// Built by concatenation so that this file does not read the variables it talks about.
const GET = "Deno.env" + ".get";
const ENV = "en" + "v";
const PROCESS_ENV = "process" + ".env";
const TO_OBJECT = "Deno.env" + ".toObject";
const OS = "os" + ".";

Deno.test("docs/environment.md lists every environment variable the code reads, and no stale reader", () => {
  const reads = scanEnvReads({ root: repoRoot, folders: [...ENV_SCAN_FOLDERS] });
  const table = Deno.readTextFileSync(join(repoRoot, "docs", "environment.md"));
  assert.deepEqual(envTableProblems(reads, parseEnvTable(table)), []);
  // Reads known to be there (a scanner that finds nothing would pass the check above).
  const names = new Set(reads.map((r) => r.name));
  for (const known of ["LATENTWATCH_DEBUG", "LATENTWATCH_LOG_FORMAT", "NATS_SERVER", "NO_COLOR"]) {
    assert.ok(names.has(known), `${known} not found by the scan`);
  }
  assert.ok(reads.some((r) => r.name === null && r.file === "src/serve/secrets.ts"));
});

Deno.test("envReadsIn finds each way of reading, by name and computed, and skips comments", () => {
  const source = [
    `const a = ${GET}("ALPHA");`, // 1
    `const b = ${ENV}("BETA") ?? deps.${ENV}?.("GAMMA");`, // 2
    `const c = ${PROCESS_ENV}.DELTA + ${PROCESS_ENV}["EPSILON"];`, // 3
    ` * const d = ${GET}("IN_A_DOC_EXAMPLE");`, // 4
    `const e = ${GET}(keyName);`, // 5
    `const all = ${TO_OBJECT}();`, // 6
  ].join("\n");
  assert.deepEqual(envReadsIn("a.ts", source), [
    { name: "ALPHA", file: "a.ts", line: 1 },
    { name: "BETA", file: "a.ts", line: 2 },
    { name: "GAMMA", file: "a.ts", line: 2 },
    { name: "DELTA", file: "a.ts", line: 3 },
    { name: "EPSILON", file: "a.ts", line: 3 },
    { name: null, file: "a.ts", line: 5 },
    { name: null, file: "a.ts", line: 6 },
  ]);
  const python = `x = ${OS}environ.get("PY_A")\ny = ${OS}environ["PY_B"] or ${OS}getenv("PY_C")\n`;
  assert.deepEqual(envReadsIn("t.py", python).map((r) => r.name), ["PY_A", "PY_B", "PY_C"]);
});

Deno.test("a table missing a variable, a computed read or a reader is rejected, naming where", async () => {
  const root = await Deno.makeTempDir();
  await Deno.mkdir(join(root, "src"));
  await Deno.writeTextFile(
    join(root, "src", "one.ts"),
    `export const a = ${GET}("LISTED");\nexport const b = ${GET}("UNLISTED");\n`,
  );
  await Deno.writeTextFile(join(root, "src", "two.ts"), `export const c = ${GET}(someName);\n`);
  const table = [
    "| variable | read by | what it does | default |", // 1
    "| -------- | ------- | ------------ | ------- |", // 2
    "| `LISTED` | `src/one.ts`, `src/gone.ts` | x | y |", // 3
    "| named by `some.key_env` | `src/old.ts` | x | y |", // 4
  ].join("\n");
  const reads = scanEnvReads({ root, folders: ["src"] });
  assert.deepEqual(envTableProblems(reads, parseEnvTable(table)), [
    "src/one.ts:2: reads UNLISTED, which the table does not list",
    "src/two.ts:1: reads a variable whose name it computes, but no row lists src/two.ts",
    "line 3: lists src/gone.ts as reading LISTED, but it does not",
    "line 4: lists src/old.ts as reading a variable named by configuration, but it does not",
  ]);
  // The same table, completed, passes.
  const fixed = table.replace("`src/one.ts`, `src/gone.ts`", "`src/one.ts`")
    .replace("`src/old.ts`", "`src/two.ts`") + "\n| `UNLISTED` | `src/one.ts` | x | y |\n";
  assert.deepEqual(envTableProblems(reads, parseEnvTable(fixed)), []);
});

Deno.test("parseEnvTable reads only tables whose second column is 'read by'", () => {
  const rows = parseEnvTable(
    [
      "| name | value |",
      "| ---- | ----- |",
      "| `OTHER` | `x.ts` |",
      "",
      "| variable | read by | what | default |",
      "| --- | --- | --- | --- |",
      "| `A`, `B` | `src/a.ts`, `deploy/t.py` | … | — |",
      "| named by `k_env` | `src/k.ts` | … | — |",
    ].join("\n"),
  );
  assert.deepEqual(rows, [
    { names: ["A", "B"], files: ["src/a.ts", "deploy/t.py"], line: 7 },
    { names: [], files: ["src/k.ts"], line: 8 },
  ]);
});
