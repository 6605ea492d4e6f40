import assert from "node:assert/strict";
import { join } from "node:path";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { formatFinding, lintPolicies } from "./policy.ts";

const rule = (when: string) =>
  `version: 2\nrules:\n  - id: r\n    title: r\n    severity: low\n    when: ${when}\n`;

async function inTemp<T>(files: Record<string, string>, f: (dir: string) => Promise<T>) {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-lint-limits-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    return await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("policy lint without --monitor: a huge latent index is an error, nothing sized by it", async () => {
  await inTemp({
    "huge.yaml": rule("{ sae: res, latent: 1099511627776, above: 1 }"),
    "max.yaml": rule("{ sae: res2, latent: 2147483647, above: 1 }")
      .replace("id: r", "id: r2"),
    "list.yaml": "version: 2\nlists:\n  - list: big\n    items: [3, 1000000000000]\n" +
      rule("{ sae: res3, latents: big, above: 1 }").replace("version: 2\n", "")
        .replace("id: r", "id: r3"),
  }, async (dir) => {
    const rss = Deno.memoryUsage().rss;
    const t0 = performance.now();
    const r = await lintPolicies([dir]);
    const ms = performance.now() - t0;
    assert.deepEqual(
      r.errors.map((e) => `${e.file.slice(dir.length + 1)}:${e.line}:${e.col} ${e.code}`),
      [
        "huge.yaml:6:31 invalid",
        "list.yaml:9:11 latent-index",
      ],
    );
    assert.equal(
      r.errors[0].reason,
      "expected a latent index below 2147483648 (limit latentIndex), found 1099511627776",
    );
    // the largest index allowed lints like any other: no 8 GB stand-in SAE
    assert.ok(ms < 2000, `${ms} ms`);
    assert.ok(Deno.memoryUsage().rss - rss < 200 * 2 ** 20);
  });
});

Deno.test("lintPolicies never throws: nesting 700 deep is a file:line:col finding naming the limit", async () => {
  let when = "{ sae: res, latent: 1, above: 1 }";
  for (let i = 0; i < 700; i++) when = `{ not: ${when} }`;
  const block = "version: 2\nrules:\n  - id: b\n    title: b\n    severity: low\n    when:\n" +
    Array.from({ length: 700 }, (_, i) => `${" ".repeat(6 + 2 * i)}not:\n`).join("") +
    `${" ".repeat(1406)}{ sae: res, latent: 1, above: 1 }\n`;
  await inTemp({ "flow.yaml": rule(when), "block.yaml": block }, async (dir) => {
    const r = await lintPolicies([dir]);
    assert.deepEqual(
      r.errors.map((e) => [e.file.slice(dir.length + 1), e.line, e.col, e.code, e.reason]),
      [
        // root 1, rules 2, the rule 3, the first not (line 7) 4: level 65 is the not of line 68
        [
          "block.yaml",
          68,
          6 + 2 * 61 + 1,
          "invalid",
          "expected YAML nested at most 64 levels deep (limit depth), found a mapping or list at level 65",
        ],
        [
          "flow.yaml",
          6,
          // the first '{' is at column 11, each "{ not: " is 7 wide: the 62nd
          11 + 61 * 7,
          "invalid",
          "expected YAML nested at most 64 levels deep (limit depth), found a mapping or list at level 65",
        ],
      ],
    );
  });
});

Deno.test("policy lint: a reason quoting a line break stays on its file:line:col line", async () => {
  // a key with a line break in it: the unknown-key reason quotes it
  const text = rule('{ sae: res, latent: 1, above: 1, "pool\\nx": token }');
  await inTemp({ "nl.yaml": text }, async (dir) => {
    const report = await lintPolicies([join(dir, "nl.yaml")]);
    assert.equal(report.errors.length, 1);
    assert.ok(report.errors[0].reason.includes("\n"), "the finding keeps the key as written");
    const line = formatFinding(report.errors[0]);
    assert.equal(line.split("\n").length, 1);
    assert.match(line, /^.*nl\.yaml:6:44: error: unknown key 'pool\\nx'/);
    const r = await runLatentwatch(["policy", "lint", "nl.yaml"], { cwd: dir });
    assert.equal(r.code, 1);
    const out = r.stderr.split("\n").filter((l) => l !== "");
    assert.deepEqual(
      out.map((l) => /^nl\.yaml:\d+:\d+: /.test(l) || l.startsWith("policy lint:")),
      [
        true,
        true,
      ],
    );
  });
});
