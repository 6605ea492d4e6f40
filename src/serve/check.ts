/**
 * `serve --check`: everything a start does before it connects anywhere.
 * The monitor file is loaded by the caller; here the SAEs and probes are
 * read, the policies compiled and the encoders built (the `models` start-up
 * step of {@linkcode MONITOR_STEPS}, run and stopped again), the secrets the
 * file names are read from the environment (`nats.password_env`, sinks'
 * `token_env`), and the state directory is chosen and probed without being
 * created. No NATS connection, no control port, no spool.
 *
 * @module
 */
import { MemoryBus } from "../bus/memory_bus.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { createSinks } from "../sinks/factory.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import { tapSubjectFilter } from "../core/frame/subjects.ts";
import { DUPLICATE_WINDOW_MS, type MonitorContext } from "./monitor_context.ts";
import { MONITOR_STEPS } from "./monitor_steps.ts";
import { controlToken, monitorRedaction, natsPassword } from "./secrets.ts";
import { chooseStateDir, probeStateDir, type StateDir, stateDirNeeded } from "./state_dir.ts";

/** What a passing check found. */
export interface CheckSummary {
  monitor: string;
  saes: number;
  probes: number;
  rules: number;
  sinks: number;
  /** The state directory, its source, and whether it exists or would be created. */
  stateDir: (StateDir & { status: "exists" | "would be created" | "not used" }) | null;
}

/** Options of {@linkcode checkMonitor}. */
export interface CheckOptions {
  /** `--state-dir`. */
  stateDir?: string;
  log?: Logger;
  /** Environment lookup for secrets (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
}

/**
 * Check that `config` would start: throws the error the start would (a
 * `ConfigError` with `file:line:col` for a bad policy, a
 * `MissingSecretError`, a `StateDirError`, ...) or resolves with a summary.
 *
 * @example
 * ```ts
 * import { loadMonitorConfig } from "../config/monitor.ts";
 * const s = await checkMonitor(await loadMonitorConfig("monitors/demo.yaml"));
 * console.log(`${s.monitor}: ${s.saes} SAEs, ${s.rules} rules`);
 * ```
 */
export async function checkMonitor(
  config: MonitorConfig,
  opts: CheckOptions = {},
): Promise<CheckSummary> {
  const log = opts.log ?? new Logger({ quiet: true });
  natsPassword(config, opts.env);
  controlToken(config, opts.env);
  monitorRedaction(config, opts.env);
  // the state directory is needed unless the spool and recording are placed elsewhere
  const state = chooseStateDir({
    flag: opts.stateDir,
    config,
    ...(opts.env ? { env: opts.env } : {}),
  });
  const status = stateDirNeeded(config) ? await probeStateDir(state) : "not used";
  // sinks are built (secrets read, settings checked), never started
  const bus = new MemoryBus();
  const sinks = createSinks(config.sinks, {
    log,
    ...(opts.env ? { env: opts.env } : {}),
    jetstream: { bus, stream: config.alerts.stream, duplicateWindowMs: DUPLICATE_WINDOW_MS },
  });
  await bus.close();
  // the `models` start-up step itself: SAEs, probes, policies, encoders
  const models = MONITOR_STEPS.find((s) => s.name === "models")!;
  const ctx: MonitorContext = {
    config,
    opts: { controlListen: null },
    log,
    telemetry: new Telemetry(),
    subject: config.nats.subject ?? tapSubjectFilter(config.model, config.hook),
    spoolDir: "",
    bus: null,
    sinksClosed: true,
    pipeline: null,
    reloading: Promise.resolve({ ok: true, rules: 0 }),
    undelivered: 0,
  };
  try {
    await models.start(ctx);
  } finally {
    await models.stop?.(ctx);
  }
  return {
    monitor: config.monitor,
    saes: config.saes.length,
    probes: config.probes.length,
    rules: ctx.built!.generation.policies.rules.length,
    sinks: sinks.length,
    stateDir: state ? { ...state, status } : null,
  };
}
