/** A bench section in a child process: its rows, its arguments, a failing child. */
import assert from "node:assert/strict";
import { childRows } from "./child_rows.ts";

Deno.test("childRows: the child's JSON lines are its rows, with its arguments and --quick passed on; a failing child is reported, its rows kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-child-rows-" });
  try {
    const script = `${dir}/section.ts`;
    await Deno.writeTextFile(
      script,
      [
        'console.log("not a row");',
        'console.log(JSON.stringify({ name: Deno.args.join(" "), tokens_per_s: 1 }));',
        'console.log(JSON.stringify({ name: "second", tokens_per_s: 2 }));',
        "Deno.exit(3);",
      ].join("\n"),
    );
    const said: string[] = [];
    const rows = await childRows(script, ["--arch", "x"], {
      quick: true,
      progress: (m) => said.push(m),
    });
    assert.deepEqual(rows.map((r) => [r.name, r.tokens_per_s]), [
      ["--arch x --quick", 1],
      ["second", 2],
    ]);
    assert.equal(said.length, 1);
    assert.match(said[0], /section\.ts --arch x exited with 3/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
