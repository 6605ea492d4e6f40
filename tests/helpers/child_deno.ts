/**
 * Test helper: run a module's source in a child Deno with V8 flags of its
 * own (`--expose-gc`, a young generation of a set size) and read back the
 * one JSON value it prints, for checks of what the collector does.
 *
 * @module
 */
import assert from "node:assert/strict";

/**
 * Write `source` to a temporary module, run it with `--v8-flags=<v8Flags>`
 * (no config file), require exit code 0 (its stderr in the message) and
 * return its stdout parsed as JSON.
 *
 * @example
 * ```ts
 * import { childJson } from "./child_deno.ts";
 * const out = await childJson<{ ok: boolean }>(
 *   "globalThis.gc(); console.log(JSON.stringify({ ok: true }));",
 *   "--expose-gc",
 * );
 * out.ok; // true
 * ```
 */
export async function childJson<T>(source: string, v8Flags: string): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-child-" });
  try {
    const script = `${dir}/child.ts`;
    await Deno.writeTextFile(script, source);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--no-config", `--v8-flags=${v8Flags}`, script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
