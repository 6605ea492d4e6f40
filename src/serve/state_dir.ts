/**
 * The state directory of a sidecar: where the alert spool, the request
 * checkpoints and relative recordings live. Chosen by, in order, the
 * `--state-dir` flag, the monitor file's `state_dir`, `$STATE_DIRECTORY`
 * (what systemd's `StateDirectory=` sets; its first entry), then
 * `$XDG_STATE_HOME/latentwatch`, then `$HOME/.local/state/latentwatch`;
 * never silently the working directory. Documented in
 * docs/monitor-config.md and docs/operations.md.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { MonitorConfig } from "../config/monitor.ts";

/** A chosen state directory (absolute) and what chose it. */
export interface StateDir {
  dir: string;
  /** `--state-dir`, `state_dir in <file>`, `$STATE_DIRECTORY`, `$XDG_STATE_HOME` or `$HOME`. */
  source: string;
}

/** The state directory cannot be chosen, created or written. Names the path and its source. */
export class StateDirError extends Error {
  readonly path: string | null;
  readonly source: string | null;
  constructor(
    message: string,
    where: { path?: string; source?: string } = {},
    opts?: ErrorOptions,
  ) {
    super(message, opts);
    this.name = "StateDirError";
    this.path = where.path ?? null;
    this.source = where.source ?? null;
  }
}

/** Where {@linkcode chooseStateDir} looks. */
export interface StateDirInputs {
  /** `--state-dir` (relative: against the working directory). */
  flag?: string;
  /** The monitor config (its `stateDir` is absolute already). */
  config: Pick<MonitorConfig, "file" | "stateDir">;
  /** Environment lookup (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
}

/**
 * Choose the state directory, or null when no source names one (no flag,
 * key, `$STATE_DIRECTORY`, absolute `$XDG_STATE_HOME` nor `$HOME`).
 *
 * @example
 * ```ts
 * const sd = chooseStateDir({
 *   config: { file: "m.yaml" },
 *   env: (k) => ({ HOME: "/home/lw" } as Record<string, string>)[k],
 * });
 * sd; // { dir: "/home/lw/.local/state/latentwatch", source: "$HOME" }
 * ```
 */
export function chooseStateDir(inputs: StateDirInputs): StateDir | null {
  const env = inputs.env ?? ((name: string) => Deno.env.get(name));
  if (inputs.flag) return { dir: resolve(inputs.flag), source: "--state-dir" };
  if (inputs.config.stateDir) {
    return { dir: inputs.config.stateDir, source: `state_dir in ${inputs.config.file}` };
  }
  // systemd: a colon-separated list when StateDirectory= names several
  const systemd = env("STATE_DIRECTORY")?.split(":")[0];
  if (systemd) return { dir: resolve(systemd), source: "$STATE_DIRECTORY" };
  // the XDG spec says to ignore a relative value
  const xdg = env("XDG_STATE_HOME");
  if (xdg && isAbsolute(xdg)) return { dir: join(xdg, "latentwatch"), source: "$XDG_STATE_HOME" };
  const home = env("HOME");
  if (home) return { dir: join(resolve(home), ".local/state/latentwatch"), source: "$HOME" };
  return null;
}

const NONE_SET = "expected a state directory from --state-dir, state_dir in the monitor file, " +
  "$STATE_DIRECTORY, $XDG_STATE_HOME or $HOME, found none set";

/**
 * Create `sd.dir` (mode 0700, parents too) when missing and prove it
 * writable by writing and removing a file. Throws {@linkcode StateDirError}
 * naming the path and its source (or, for null, the sources it looked at).
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await ensureStateDir({ dir: `${dir}/state`, source: "--state-dir" });
 * ```
 */
export async function ensureStateDir(sd: StateDir | null): Promise<StateDir> {
  if (!sd) throw new StateDirError(NONE_SET);
  const where = { path: sd.dir, source: sd.source };
  try {
    await Deno.mkdir(sd.dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateDirError(
      `state directory ${sd.dir} (from ${sd.source}): expected a directory it can create, ` +
        `found ${(err as Error).message}`,
      where,
      { cause: err },
    );
  }
  const probe = join(sd.dir, `.write-test-${Deno.pid}`);
  try {
    await Deno.writeTextFile(probe, "");
    await Deno.remove(probe);
  } catch (err) {
    throw new StateDirError(
      `state directory ${sd.dir} (from ${sd.source}): expected a writable directory, ` +
        `found ${(err as Error).message}`,
      where,
      { cause: err },
    );
  }
  return sd;
}

/**
 * What {@linkcode ensureStateDir} would do, without changing anything:
 * `exists` (and is writable), or `would be created` (under its nearest
 * existing ancestor, writable). Throws {@linkcode StateDirError} otherwise.
 *
 * @example
 * ```ts
 * await probeStateDir({ dir: "/tmp/lw-state-not-there", source: "--state-dir" }); // "would be created"
 * ```
 */
export async function probeStateDir(
  sd: StateDir | null,
): Promise<"exists" | "would be created"> {
  if (!sd) throw new StateDirError(NONE_SET);
  let at = sd.dir;
  for (;;) {
    const info = await Deno.stat(at).catch((err) => {
      // missing, or under a file: look at the parent
      if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
        return null;
      }
      throw new StateDirError(
        `state directory ${sd.dir} (from ${sd.source}): expected a readable path, ` +
          `found ${(err as Error).message} at ${at}`,
        { path: sd.dir, source: sd.source },
        { cause: err },
      );
    });
    if (info) {
      if (!info.isDirectory) {
        throw new StateDirError(
          `state directory ${sd.dir} (from ${sd.source}): expected a directory, ` +
            `found a file at ${at}`,
          { path: sd.dir, source: sd.source },
        );
      }
      // a temporary folder made and removed at once: no trace left
      const probe = join(at, `.latentwatch-check-${Deno.pid}`);
      try {
        await Deno.mkdir(probe);
        await Deno.remove(probe);
      } catch (err) {
        throw new StateDirError(
          `state directory ${sd.dir} (from ${sd.source}): expected a writable directory, ` +
            `found ${(err as Error).message} at ${at}`,
          { path: sd.dir, source: sd.source },
          { cause: err },
        );
      }
      return at === sd.dir ? "exists" : "would be created";
    }
    const up = dirname(at);
    if (up === at) return "would be created";
    at = up;
  }
}

/**
 * `config` with a relative `record.path` placed under the state directory.
 *
 * @example
 * ```ts
 * import { parseMonitorConfig } from "../config/monitor.ts";
 * const cfg = parseMonitorConfig(
 *   "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n" +
 *     "record: {path: t.trace.gz}\n",
 *   "/srv/lw/m.yaml",
 * );
 * placeInStateDir(cfg, "/var/lib/latentwatch").record?.path; // "/var/lib/latentwatch/t.trace.gz"
 * ```
 */
export function placeInStateDir(config: MonitorConfig, stateDir: string): MonitorConfig {
  if (!config.record || isAbsolute(config.record.path)) return config;
  return { ...config, record: { ...config.record, path: join(stateDir, config.record.path) } };
}

/**
 * Whether anything of `config` lives in the state directory: the spool
 * (unless `spoolDir` or `alerts.spool.dir` puts it elsewhere) or a relative
 * `record.path`.
 *
 * @example
 * ```ts
 * import { parseMonitorConfig } from "../config/monitor.ts";
 * const cfg = parseMonitorConfig(
 *   "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n",
 *   "/srv/lw/m.yaml",
 * );
 * stateDirNeeded(cfg); // true: the spool's default place
 * stateDirNeeded(cfg, "/tmp/spool"); // false
 * ```
 */
export function stateDirNeeded(
  config: Pick<MonitorConfig, "alerts" | "record">,
  spoolDir?: string,
): boolean {
  return (spoolDir ?? config.alerts.spool.dir) === undefined ||
    (config.record !== undefined && !isAbsolute(config.record.path));
}
