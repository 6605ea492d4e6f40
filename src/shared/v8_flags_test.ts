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
