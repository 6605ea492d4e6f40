/**
 * Runs the standard-library-only Python fixture writers in this folder, so
 * archives and pickles under test come from an implementation independent of
 * the readers (CPython's `zipfile` and `pickle`).
 *
 * @module
 */

/** Python is needed to write the fixtures but is not installed. */
export class PythonMissingError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PythonMissingError";
  }
}

/**
 * Run `python3 <script> <args...>` from this folder and return its stdout.
 *
 * @throws {PythonMissingError} when python3 is not on PATH
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await runPython("torch_fixtures.py", ["openai", dir]);
 * ```
 */
export async function runPython(script: string, args: string[]): Promise<string> {
  const path = new URL(script, import.meta.url).pathname;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("python3", {
      args: [path, ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PythonMissingError(
        `these tests write their fixtures with python3 (standard library only) but python3 is not on PATH; install python3 (e.g. apt-get install python3) and rerun`,
        { cause: e },
      );
    }
    throw e;
  }
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`python3 ${script} ${args.join(" ")} failed:\n${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

let torchDir: Promise<string> | undefined;

/**
 * A temporary folder of checkpoints written by `torch_fixtures.py` (made
 * once per test module), with `expected.json` holding the Python reference
 * outputs.
 *
 * @example
 * ```ts
 * const dir = await torchFixtureDir();
 * const expected = JSON.parse(await Deno.readTextFile(`${dir}/expected.json`));
 * ```
 */
export function torchFixtureDir(): Promise<string> {
  torchDir ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "latentwatch-torch-" });
    await runPython("torch_fixtures.py", [dir]);
    return dir;
  })();
  return torchDir;
}
