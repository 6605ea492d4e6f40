/**
 * A bench section run as a child process: `bench/e2e.ts` (so RSS is the
 * sidecar's alone) and `bench/gate.ts` (whose sidecar had run in the bench's
 * process, after the encode rows had grown its heap, in full runs only:
 * --quick's gating rows came out faster than the full run's). The child runs
 * with the V8 heap setting every launch of `serve` has; the JSON lines of its
 * stdout are its rows, its stderr is the bench's.
 *
 * @module
 */
import { SIDECAR_V8_FLAGS } from "../src/shared/v8_flags.ts";
import type { BenchResult } from "./run.ts";

/** How to run a child section. */
export interface ChildRowsOptions {
  /** Pass `--quick` to the child. */
  quick: boolean;
  /** Where a child that exits with an error is reported (its rows are kept). */
  progress: (msg: string) => void;
}

/**
 * Run `script` (a path relative to this folder) with `args` and return the
 * rows it printed, one JSON object per stdout line; other lines are ignored.
 *
 * @example
 * ```ts
 * import { childRows } from "./child_rows.ts";
 * const rows = await childRows("./gate.ts", [], { quick: true, progress: console.error });
 * ```
 */
export async function childRows(
  script: string,
  args: string[],
  opts: ChildRowsOptions,
): Promise<BenchResult[]> {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      SIDECAR_V8_FLAGS,
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      new URL(script, import.meta.url).pathname,
      ...args,
      ...(opts.quick ? ["--quick"] : []),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (code !== 0) opts.progress(`${script} ${args.join(" ")} exited with ${code}`);
  return new TextDecoder().decode(stdout).split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as BenchResult);
}
