/**
 * `latentwatch serve --monitor <file>`: run one monitor until SIGINT/SIGTERM;
 * with `--check`, load and check everything without connecting anywhere.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadMonitorConfig } from "../config/monitor.ts";
import { checkMonitor } from "../serve/check.ts";
import { startMonitor } from "../serve/monitor.ts";
import { StartupAbortedError } from "../serve/steps.ts";
import { type LogFormat, Logger, parseLogFormat } from "../shared/log.ts";

const USAGE = "usage: latentwatch serve --monitor <file> [--listen host:port] " +
  "[--state-dir <dir>] [--log-format text|json] [--check]";

/**
 * Run the `serve` command; resolves with the exit code after a signal (or
 * at once with `--check`: 0 when the monitor would start, 1 when not).
 *
 * @example
 * ```ts
 * await runServeCommand(["--monitor", "monitors/demo.yaml", "--check"]);
 * ```
 */
export async function runServeCommand(args: string[]): Promise<number> {
  let values;
  let format: LogFormat;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        monitor: { type: "string", short: "m" },
        listen: { type: "string" },
        "state-dir": { type: "string" },
        "log-format": { type: "string" },
        check: { type: "boolean" },
      },
      strict: true,
    }));
    const named = values["log-format"];
    format = named !== undefined
      ? parseLogFormat(named, "--log-format")
      : parseLogFormat(Deno.env.get("LATENTWATCH_LOG_FORMAT") || "text", "$LATENTWATCH_LOG_FORMAT");
  } catch (err) {
    console.error(`latentwatch serve: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!values.monitor) {
    console.error(USAGE);
    return 2;
  }
  const log = new Logger({ format });
  const fail = (err: unknown) => {
    const message = (err as Error).message;
    if (format === "json") log.error("startup.failed", { error: message });
    else console.error(`latentwatch serve: ${message}`);
    return 1;
  };
  const stateDir = values["state-dir"];
  if (values.check) {
    try {
      const config = await loadMonitorConfig(values.monitor);
      const s = await checkMonitor(config, { log, ...(stateDir ? { stateDir } : {}) });
      const state = s.stateDir
        ? `${s.stateDir.dir} (from ${s.stateDir.source}, ${s.stateDir.status})`
        : "none";
      console.log(
        `ok: monitor ${s.monitor}: ${s.saes} SAE(s), ${s.probes} probe(s), ${s.rules} rule(s), ` +
          `${s.sinks} sink(s); state dir ${state}`,
      );
      return 0;
    } catch (err) {
      return fail(err);
    }
  }
  // listening before the first step, so a signal stops serve the same way in
  // every state: a start-up in progress (the wait for NATS included) stops
  // what it started, in reverse; a running monitor stops all its steps
  const stop = new AbortController();
  const { promise, resolve } = Promise.withResolvers<void>();
  let signalled: string | null = null;
  const onSignal = (name: string) => () => {
    if (signalled !== null) return;
    signalled = name;
    log.info("monitor.stopping", { signal: name });
    stop.abort();
    resolve();
  };
  const onInt = onSignal("SIGINT");
  const onTerm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let monitor: Awaited<ReturnType<typeof startMonitor>> | null = null;
  // SIGHUP reloads the policy files, as file changes do
  const onHup = () => void monitor?.reload();
  Deno.addSignalListener("SIGHUP", onHup);
  const unlisten = () => {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGHUP", onHup);
  };
  try {
    const config = await loadMonitorConfig(values.monitor);
    if (signalled !== null) throw new StartupAbortedError("config");
    monitor = await startMonitor(config, {
      log,
      watchPolicies: true,
      signal: stop.signal,
      ...(values.listen ? { controlListen: values.listen } : {}),
      ...(stateDir ? { stateDir } : {}),
    });
  } catch (err) {
    unlisten();
    if (!(err instanceof StartupAbortedError)) return fail(err);
    log.info("monitor.stopped", { during: "start-up", step: err.step, undelivered: 0 });
    log.flush();
    return 0;
  }
  await promise;
  unlisten();
  const undelivered = await monitor.stop();
  log.info("monitor.stopped", { during: "running", undelivered });
  log.flush();
  // alerts that could not be delivered are counted and logged; say so in the exit code too
  return undelivered > 0 ? 3 : 0;
}
