import assert from "node:assert/strict";
import { join } from "node:path";
import { parseYamlSource } from "../config/yaml_source.ts";
import { isMonitorSource, policyPaths, policyPathsWithSkips } from "./policy_paths.ts";

/** A folder holding `files` (relative paths), removed after `fn`. */
async function withTree(files: string[], fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lw_policy_paths_" });
  try {
    for (const f of files) {
      const path = join(dir, f);
      await Deno.mkdir(join(path, ".."), { recursive: true });
      await Deno.writeTextFile(path, "version: 2\nrules: []\n");
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TREE = [
  "a.yaml",
  "b.yml",
  "b.test.yaml",
  "notes.txt",
  ".hidden/x.yaml",
  "sub/c.yaml",
  "sub/testdata/t1.yaml",
  "sub/testdata/deep/t2.yaml",
  "testdata/t3.yaml",
];

Deno.test("policy paths: a folder is its policy YAML in name order, rule tests and testdata noted", async () => {
  await withTree(TREE, async (dir) => {
    const missing = join(dir, "missing.yaml");
    assert.deepEqual(await policyPathsWithSkips([dir, missing]), {
      files: [
        { path: join(dir, "a.yaml"), inFolder: true },
        { path: join(dir, "b.yml"), inFolder: true },
        { path: join(dir, "sub", "c.yaml"), inFolder: true },
        { path: missing, inFolder: false },
      ],
      skipped: [
        { file: join(dir, "b.test.yaml"), reason: "a rule test (*.test.yaml; see policy test)" },
        // once, however many files it holds
        {
          file: join(dir, "sub", "testdata"),
          reason: "a testdata folder (fixtures, not policies)",
        },
        { file: join(dir, "testdata"), reason: "a testdata folder (fixtures, not policies)" },
      ],
    });
    assert.deepEqual(await policyPaths([dir]), [
      join(dir, "a.yaml"),
      join(dir, "b.yml"),
      join(dir, "sub", "c.yaml"),
    ]);
  });
});

Deno.test("policy paths: a file named on the command line is taken as it is, even a rule test", async () => {
  await withTree(TREE, async (dir) => {
    const named = [join(dir, "b.test.yaml"), join(dir, "notes.txt")];
    assert.deepEqual(await policyPathsWithSkips(named), {
      files: named.map((path) => ({ path, inFolder: false })),
      skipped: [],
    });
  });
});

Deno.test("policy paths: a monitor file is a mapping with monitor: and saes:", () => {
  const src = (text: string) => parseYamlSource(text, "f.yaml");
  assert.equal(isMonitorSource(src("monitor: demo\nsaes: []\n")), true);
  assert.equal(isMonitorSource(src("monitor: demo\nrules: []\n")), false);
  assert.equal(isMonitorSource(src("version: 2\nsaes: []\n")), false);
  assert.equal(isMonitorSource(src("- monitor\n- saes\n")), false);
  assert.equal(isMonitorSource(src("monitor\n")), false);
});
