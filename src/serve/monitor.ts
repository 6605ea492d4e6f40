/**
 * Start a monitor from its config: load the SAEs, compile the policies,
 * connect the bus, run the pipeline and the control API. Shared by
 * `latentwatch serve`, the demo, the tests and the bench.
 *
 * Start-up is the list {@linkcode MONITOR_STEPS} (see `./steps.ts`): each
 * named step opens one thing and closes it again; they stop in reverse, on
 * shutdown and when a later step fails, so a failed start leaves no port,
 * connection, spool or session behind.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { tapSubjectFilter } from "../core/frame/subjects.ts";
import type { SaeWeights } from "../core/sae.ts";
import type { OnEncoded } from "./batch.ts";
import type { Bus } from "../bus/bus.ts";

import type { MonitorConfig } from "../config/monitor.ts";

import { type PolicyCompilerOptions } from "./policy_compiler.ts";
import { Logger } from "../shared/log.ts";
import { Pipeline } from "./pipeline.ts";

import { Telemetry } from "../shared/telemetry.ts";
import { startSteps, StartupStepError } from "./steps.ts";
import { join } from "node:path";
import { chooseStateDir, ensureStateDir, placeInStateDir, stateDirNeeded } from "./state_dir.ts";
import { MONITOR_STEPS, type MonitorContext, reload } from "./monitor_steps.ts";

export { MONITOR_STEPS, type MonitorContext };

/** Hooks and overrides for {@linkcode startMonitor}. */
export interface StartOptions {
  /** Use this bus instead of connecting to `config.nats.url` (demo, tests). */
  bus?: Bus;
  log?: Logger;
  onAlert?: (alert: Alert) => void;
  onPublished?: (alert: Alert, seq: number, duplicate: boolean) => void;
  /** After each batch (see the pipeline's `onEncoded`: `frames[i].data` is valid during the call only). */
  onEncoded?: OnEncoded;
  /**
   * Folder of the JetStream sink's on-disk spool (one process per folder);
   * overrides `alerts.spool.dir`, whose default is `spool/<monitor>` under
   * the state directory.
   */
  spoolDir?: string;
  /**
   * The state directory (`serve --state-dir`): wins over `state_dir` and the
   * environment (see `./state_dir.ts`). Created (0700) when something lives
   * in it: the default spool, a relative `record.path`.
   */
  stateDir?: string;
  /** Reload the policies when one of their files changes (serve does). */
  watchPolicies?: boolean;
  /** Override the control API address (`host:port`); `null` disables it. */
  controlListen?: string | null;
  /**
   * The workbench under `/ui/` of the control API (docs/workbench.md): how
   * many recent requests it keeps (default 200), whether it may save policy
   * files (default false); `false` leaves it out.
   */
  workbench?: { maxRequests?: number; writable?: boolean } | false;
  /** The reload compiler's settings (timeout, default 60 s; a stand-in worker in tests). */
  policyCompiler?: PolicyCompilerOptions;
  /**
   * Stops the start-up (serve's SIGINT/SIGTERM): what had started stops in
   * reverse and {@linkcode startMonitor} throws `StartupAbortedError`; also
   * ends the wait for NATS.
   */
  signal?: AbortSignal;
}

/** What a policy reload did. */
export type ReloadResult = { ok: true; rules: number } | { ok: false; error: string };

/** A running monitor. */
export interface RunningMonitor {
  config: MonitorConfig;
  bus: Bus;
  pipeline: Pipeline;
  telemetry: Telemetry;
  saes: ReadonlyMap<string, SaeWeights>;
  /** Address of the control API, when it runs. */
  controlAddr: Deno.NetAddr | null;
  /** Reload the policy files now (what a file change or SIGHUP does). */
  reload(): Promise<ReloadResult>;
  /** Stop (once; later calls return the same result); resolves with the number of alerts that could not be delivered in time. */
  stop(): Promise<number>;
}

/**
 * Load everything a monitor needs and start it, step by step
 * ({@linkcode MONITOR_STEPS}), in its state directory (logged as
 * `state.dir`). Throws with a clear message (file, field, expected, found)
 * when something in the config is wrong, after undoing the steps that had
 * started; the log names the step (`startup.step_failed`); a state
 * directory that cannot be made is a `StateDirError` naming its source.
 *
 * @example
 * ```ts
 * import { loadMonitorConfig } from "../config/monitor.ts";
 *
 * const m = await startMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * // ... later
 * await m.stop();
 * ```
 */
export async function startMonitor(
  config: MonitorConfig,
  opts: StartOptions = {},
): Promise<RunningMonitor> {
  const log = opts.log ?? new Logger();
  const state = chooseStateDir({ flag: opts.stateDir, config });
  const spoolOverride = opts.spoolDir ?? config.alerts.spool?.dir;
  // created only when something lives there (the demo and tests pass their own spool)
  const used = stateDirNeeded(config, spoolOverride);
  if (used) {
    const { dir } = await ensureStateDir(state);
    config = placeInStateDir(config, dir);
  }
  log.info("state.dir", {
    dir: state?.dir ?? "(none)",
    source: state?.source ?? "(none)",
    ...(used ? {} : { used: false }),
  });
  const ctx: MonitorContext = {
    config,
    opts,
    log,
    telemetry: new Telemetry(),
    subject: config.nats.subject ?? tapSubjectFilter(config.model, config.hook),
    spoolDir: spoolOverride ?? join(state!.dir, "spool", config.monitor),
    bus: opts.bus ?? null,
    sinksClosed: false,
    pipeline: null,
    reloading: Promise.resolve({ ok: true, rules: 0 }),
    undelivered: 0,
  };
  let started;
  try {
    started = await startSteps(MONITOR_STEPS, ctx, {
      log,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    // the caller sees the step's own error (its message is the user's start-up error)
    throw err instanceof StartupStepError ? err.cause : err;
  }
  let stopping: Promise<number> | null = null;
  return {
    config,
    bus: ctx.bus!,
    pipeline: ctx.pipeline!,
    telemetry: ctx.telemetry,
    saes: ctx.models!.saes,
    controlAddr: ctx.server?.addr ?? null,
    reload: () => reload(ctx),
    stop: () =>
      stopping ??= (async () => {
        // failed stops are logged with their step's name; the others still ran
        await started.stop();
        log.flush();
        return ctx.undelivered;
      })(),
  };
}
