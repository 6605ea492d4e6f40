/**
 * What the `policy`, `policy test`, `policy calibrate` and `replay`
 * commands do alike: parse their flags (with `--help`), report bad usage,
 * load a monitor for offline runs, print an error, and walk a folder in
 * name order.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { loadMonitorConfig } from "../config/monitor.ts";
import type { OfflineLoadOptions, OfflineMonitor } from "../traces/offline.ts";

const HELP = { help: { type: "boolean", short: "h" } } as const;

/** What {@linkcode parseCommandArgs} returns for `options` (plus `--help`). */
export type ParsedCommandArgs<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{
    args: string[];
    options: O & typeof HELP;
    allowPositionals: true;
    strict: true;
  }>
>;

/**
 * Parse `args` strictly with `options` and `--help`/`-h`, positionals
 * allowed. Returns the exit code when the command is done: 2 after
 * printing `<name>: <problem>` and the usage on stderr for a bad flag, 0
 * after printing the usage on stdout for `--help`.
 *
 * @example
 * ```ts
 * const USAGE = "usage: latentwatch replay [--json] <trace>";
 * function replayCommand(args: string[]): number {
 *   const parsed = parseCommandArgs("replay", USAGE, args, { json: { type: "boolean" } });
 *   if (typeof parsed === "number") return parsed;
 *   return parsed.values.json ? 0 : 1; // boolean | undefined
 * }
 * ```
 */
export function parseCommandArgs<O extends ParseArgsOptionsConfig>(
  name: string,
  usage: string,
  args: string[],
  options: O,
): ParsedCommandArgs<O> | number {
  let parsed: ParsedCommandArgs<O>;
  try {
    parsed = parseArgs({
      args,
      options: { ...options, ...HELP },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    return usageError(name, usage, (err as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage);
    return 0;
  }
  return parsed;
}

/**
 * Print `<name>: <message>` and the usage on stderr; returns 2, the exit
 * code of bad usage.
 *
 * @example
 * ```ts
 * function policyTest(positionals: string[]): number {
 *   if (positionals.length === 0) return usageError("policy test", "usage: …", "expected at least one path");
 *   return 0;
 * }
 * ```
 */
export function usageError(name: string, usage: string, message: string): number {
  console.error(`${name}: ${message}\n\n${usage}`);
  return 2;
}

/**
 * Print `<name>: <the error's message>` on stderr; returns 1, the exit code
 * of a command that failed.
 *
 * @example
 * ```ts
 * async function replayCommand(run: () => Promise<void>): Promise<number> {
 *   try { await run(); } catch (err) { return commandFailed("replay", err); }
 *   return 0;
 * }
 * ```
 */
export function commandFailed(name: string, err: unknown): number {
  console.error(`${name}: ${(err as Error).message}`);
  return 1;
}

/**
 * Read the monitor config at `path` and load its SAEs, probes and policies
 * for an offline run.
 *
 * @example
 * ```ts
 * const monitor = await loadMonitorAt("monitors/demo.yaml");
 * await monitor.close();
 * ```
 */
export async function loadMonitorAt(
  path: string,
  opts?: OfflineLoadOptions,
): Promise<OfflineMonitor> {
  // imported here, not above: `policy lint` uses this module without loading onnxruntime
  const { loadOfflineMonitor } = await import("../traces/offline.ts");
  return await loadOfflineMonitor(await loadMonitorConfig(path), opts);
}

/**
 * Every file under `dir` that `take` accepts, depth first with the
 * entries of each folder in name order; folders that `enter` refuses are
 * skipped.
 *
 * @example
 * ```ts
 * await filesUnder("policies", { take: (name) => name.endsWith(".test.yaml") });
 * ```
 */
export async function filesUnder(
  dir: string,
  opts: { take: (name: string) => boolean; enter?: (name: string) => boolean },
): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string) => {
    const entries = [];
    for await (const e of Deno.readDir(d)) entries.push(e);
    entries.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory) {
        if (!opts.enter || opts.enter(e.name)) await walk(p);
      } else if (opts.take(e.name)) found.push(p);
    }
  };
  await walk(dir);
  return found;
}
