import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkDocLinks, headingAnchors, markdownLinks, projectDocs } from "./doc_links.ts";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

Deno.test("the project's pages: every relative link resolves inside the repository", () => {
  const files = projectDocs(repoRoot);
  // the deployment guides are read as often as docs/ and link into it; vendored data is not ours
  for (
    const page of ["deploy/README.md", "deploy/cluster/README.md", "deploy/taps/python/README.md"]
  ) {
    assert.ok(files.includes(page), `${page} not among ${files.length} pages`);
  }
  assert.ok(
    !files.some((f) => f.startsWith("tests/testdata/")),
    "vendored test data is not a page",
  );
  const { checked, broken } = checkDocLinks({ root: repoRoot, files });
  const lines = broken.map((b) => `${b.file}:${b.line}: ${b.target}: ${b.reason}`);
  assert.deepEqual(lines, []);
  // The docs link to each other, to policies, images and bench charts: far more than a handful.
  assert.ok(checked > 50, `only ${checked} relative links found: is the parser missing some?`);
});

/** A scratch repository: `repo/` with a few files, and a file beside it, outside. */
async function scratchRepo(): Promise<string> {
  const base = await Deno.makeTempDir();
  const repo = join(base, "repo");
  await Deno.mkdir(join(repo, "docs"), { recursive: true });
  await Deno.writeTextFile(join(base, "outside.md"), "# Outside\n");
  await Deno.writeTextFile(join(repo, "docs", "guide.md"), "# Guide\n\n## Second part: `x`\n");
  await Deno.writeTextFile(join(repo, "docs", "chart.svg"), "<svg/>");
  return repo;
}

Deno.test("a broken link of each kind is named with its file:line", async () => {
  const repo = await scratchRepo();
  const page = [
    "# Page", // 1
    "[ok](guide.md) [ok anchor](guide.md#second-part-x) [self](#page) ![ok](chart.svg)", // 2
    "[missing](nothere.md)", // 3
    "![missing image](nothere.png)", // 4
    "[bad anchor](guide.md#third-part)", // 5
    "[outside](../../outside.md)", // 6
    "[a link whose text", // 7
    "spans lines](gone/)", // 8
    "see `../../outside.md` and `../nowhere.md`", // 9
    "[web](https://example.com/x) [mail](mailto:a@example.com)", // 10
    "```md", // 11
    "[in a code block](ignored.md)", // 12
    "```", // 13
    "[ref]: missing-ref.md", // 14
    '<img src="nothere.svg" alt="x">', // 15
    "[anchor-only bad](#nope)", // 16
  ].join("\n");
  await Deno.writeTextFile(join(repo, "docs", "page.md"), page + "\n");
  const { checked, broken } = checkDocLinks({ root: repo, files: ["docs/page.md"] });
  assert.deepEqual(
    broken.map((b) => `${b.file}:${b.line}: ${b.target}: ${b.reason}`),
    [
      "docs/page.md:3: nothere.md: no such file in the repository",
      "docs/page.md:4: nothere.png: no such file in the repository",
      "docs/page.md:5: guide.md#third-part: no heading with the anchor #third-part in docs/guide.md",
      "docs/page.md:6: ../../outside.md: leaves the repository",
      "docs/page.md:8: gone/: no such file in the repository",
      "docs/page.md:9: ../../outside.md: leaves the repository",
      "docs/page.md:9: ../nowhere.md: no such file in the repository",
      "docs/page.md:14: missing-ref.md: no such file in the repository",
      "docs/page.md:15: nothere.svg: no such file in the repository",
      "docs/page.md:16: #nope: no heading with the anchor #nope in docs/page.md",
    ],
  );
  // 4 good ones on line 2 and the 10 broken ones; web links and the code block are not counted.
  assert.deepEqual(checked, 4 + 10);
});

Deno.test("the command line exits 1 and prints file:line for a broken link", async () => {
  const repo = await scratchRepo();
  await Deno.writeTextFile(join(repo, "docs", "bad.md"), "# Bad\n\nsee [this](nothere.md)\n");
  const cli = join(repoRoot, "tools", "doc_links.ts");
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", cli, "docs/bad.md"],
    cwd: repo,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.deepEqual(code, 1);
  assert.deepEqual(
    new TextDecoder().decode(stderr),
    "docs/bad.md:3: nothere.md: no such file in the repository\n",
  );
});

Deno.test("headingAnchors follows GitHub's anchors: punctuation dropped, repeats numbered", () => {
  const anchors = headingAnchors(
    "# SOC forwarding with Vector: the sidecar's renderings, unchanged\n" +
      "## `serve` --check\n## Notes\n## Notes\n```sh\n# not a heading\n```\n",
  );
  assert.deepEqual(
    [...anchors],
    [
      "soc-forwarding-with-vector-the-sidecars-renderings-unchanged",
      "serve---check",
      "notes",
      "notes-1",
    ],
  );
});

Deno.test("markdownLinks reads destinations with parentheses and <…>, and skips code spans", () => {
  const links = markdownLinks(
    '[a](x_(1).md) [b](<with space.md>) `[c](code.md)` [d](y.md "title")\n',
  );
  assert.deepEqual(links.map((l) => l.target), ["x_(1).md", "with space.md", "y.md"]);
});

Deno.test("projectDocs outside git: README.md first, pages anywhere, not dependencies or vendored data", async () => {
  const repo = await scratchRepo();
  for (const dir of ["deploy/k8s", "node_modules/pkg", "tests/testdata/schema", "bench/results"]) {
    await Deno.mkdir(join(repo, dir), { recursive: true });
    await Deno.writeTextFile(join(repo, dir, "README.md"), "# Here\n");
  }
  await Deno.writeTextFile(join(repo, "README.md"), "# Top\n");
  await Deno.writeTextFile(join(repo, "deploy", "notes.txt"), "not markdown\n");
  assert.deepEqual(projectDocs(repo), ["README.md", "deploy/k8s/README.md", "docs/guide.md"]);
});

Deno.test("projectDocs in a git work tree: what git knows, not what it ignores", async () => {
  const repo = await scratchRepo();
  const git = (...args: string[]) =>
    new Deno.Command("git", { args: ["-C", repo, ...args], stdout: "null", stderr: "null" })
      .outputSync();
  assert.ok(git("init", "-q").success, "git init: these tests need git");
  for (const dir of ["deploy/k8s", "scratch", "tests/testdata"]) {
    await Deno.mkdir(join(repo, dir), { recursive: true });
    await Deno.writeTextFile(join(repo, dir, "README.md"), "# Here\n");
  }
  await Deno.writeTextFile(join(repo, "README.md"), "# Top\n");
  await Deno.writeTextFile(join(repo, ".gitignore"), "scratch/\n");
  // a testdata folder elsewhere is the project's own: only tests/testdata is vendored
  await Deno.mkdir(join(repo, "src", "testdata"), { recursive: true });
  await Deno.writeTextFile(join(repo, "src", "testdata", "NOTES.md"), "# Notes\n");
  assert.deepEqual(projectDocs(repo), [
    "README.md",
    "deploy/k8s/README.md",
    "docs/guide.md",
    "src/testdata/NOTES.md",
  ]);
});
