/**
 * Run the `latentwatch` CLI as a separate process (`deno run -A src/main.ts
 * ...`) and collect what it printed, for tests of commands end to end.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** The repository root, where the CLI runs unless told otherwise. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The CLI entry point, `src/main.ts`, as an absolute path. */
export const LATENTWATCH_MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));

/** How a CLI run ended. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `deno run -A src/main.ts ...args` in `cwd` (the repository root by
 * default) with `NO_COLOR=1` plus `env` on top of this process's environment,
 * and return its exit code and decoded output. `main` runs another copy's
 * `src/main.ts`.
 *
 * @example
 * ```ts
 * const r = await runLatentwatch(["policy", "lint", "policies/demo.yaml"]);
 * r.code; // 0
 * ```
 */
export async function runLatentwatch(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; main?: string } = {},
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", opts.main ?? LATENTWATCH_MAIN, ...args],
    cwd: opts.cwd ?? REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A CLI process left running, and its stderr once it exits. */
export interface RunningCli {
  child: Deno.ChildProcess;
  /** Everything it wrote to stderr, when it has exited. */
  stderr: Promise<string>;
}

/**
 * Start `deno run -A src/main.ts ...args` (with `NO_COLOR=1`) and leave it
 * running: stdout is discarded, stderr collected for when it exits.
 *
 * @example
 * ```ts
 * const { child, stderr } = spawnLatentwatch(["serve", "--monitor", "m.yaml"]);
 * child.kill("SIGTERM");
 * (await child.status).code; // 0
 * await stderr;
 * ```
 */
export function spawnLatentwatch(args: string[]): RunningCli {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", LATENTWATCH_MAIN, ...args],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = (async () => new TextDecoder().decode((await child.output()).stderr))();
  return { child, stderr };
}
