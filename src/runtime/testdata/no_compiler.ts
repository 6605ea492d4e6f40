/**
 * Run `code` (TypeScript) in a fresh Deno process in which the native
 * kernels cannot be compiled: `CC` names no compiler (unless `cc` is given)
 * and `cache` is the kernels' folder. Returns what it printed, parsed as
 * one JSON value. For tests of what happens without the native kernels.
 *
 * @module
 */
import assert from "node:assert/strict";

/**
 * The JSON line `code` prints, run without a compiler and with `cache` as
 * `LATENTWATCH_NATIVE_CACHE`.
 *
 * @example
 * ```ts
 * const cache = await Deno.makeTempDir();
 * const got = await evalWithoutCompiler<number>("console.log(1 + 1);", cache); // 2
 * ```
 */
export async function evalWithoutCompiler<T>(
  code: string,
  cache: string,
  cc = "/nonexistent/cc",
): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    env: { CC: cc, LATENTWATCH_NATIVE_CACHE: cache },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}
