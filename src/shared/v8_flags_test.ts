import assert from "node:assert/strict";
import config from "../../deno.json" with { type: "json" };
import { SIDECAR_V8_FLAGS } from "./v8_flags.ts";

Deno.test("v8 flags: every task that runs the sidecar passes them before the script", () => {
  const tasks = config.tasks as Record<string, string>;
  for (const name of ["latentwatch", "demo", "bench"]) {
    const argv = tasks[name].split(/\s+/);
    const flag = argv.indexOf(SIDECAR_V8_FLAGS);
    const script = argv.findIndex((a) => a.endsWith(".ts"));
    assert.ok(
      flag > 0 && flag < script,
      `task ${name}: expected ${SIDECAR_V8_FLAGS} before the script, found '${tasks[name]}'`,
    );
  }
});

Deno.test("v8 flags: every launch of src/main.ts written in deploy/ and the READMEs passes them", async () => {
  const files = [
    "deploy/systemd/latentwatch.service",
    "deploy/container/Containerfile",
    "deploy/README.md",
    "README.md",
  ];
  let launches = 0;
  for (const file of files) {
    const text = await Deno.readTextFile(new URL(`../../${file}`, import.meta.url));
    text.split("\n").forEach((line, i) => {
      // a launch of the sidecar: deno's run with the entry point on one line (either quoting)
      if (!/deno"?,? "?run\b/.test(line) || !line.includes("src/main.ts")) return;
      launches++;
      assert.ok(
        line.includes(SIDECAR_V8_FLAGS),
        `${file}:${i + 1}: expected ${SIDECAR_V8_FLAGS}, found '${line.trim()}'`,
      );
    });
  }
  // the unit's check and start, the container's entry point, deploy/README's three, README's one
  assert.ok(launches >= 7, `expected at least 7 launches of src/main.ts, found ${launches}`);
});

Deno.test("v8 flags: V8 accepts them (a misspelt flag stops deno at start)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", SIDECAR_V8_FLAGS, "console.log('ok')"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "ok");
  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--heap-growing-percentage=30", "1"],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.notEqual(bad.code, 0, "a flag V8 does not know must be refused");
});
