/**
 * `latentwatch serve --monitor <file>`: run one monitor until SIGINT/SIGTERM.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { loadMonitorConfig } from "../config/monitor.ts";
import { startMonitor } from "../serve/monitor.ts";

/**
 * Run the `serve` command; resolves with the exit code after a signal.
 *
 * @example
 * ```ts
 * await runServeCommand(["--monitor", "monitors/demo.yaml"]);
 * ```
 */
export async function runServeCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { monitor: { type: "string", short: "m" }, listen: { type: "string" } },
    strict: true,
  });
  if (!values.monitor) {
    console.error("usage: latentwatch serve --monitor <file> [--listen host:port]");
    return 2;
  }
  let monitor;
  try {
    const config = await loadMonitorConfig(values.monitor);
    monitor = await startMonitor(config, {
      watchPolicies: true,
      ...(values.listen ? { controlListen: values.listen } : {}),
    });
  } catch (err) {
    console.error(`latentwatch serve: ${(err as Error).message}`);
    return 1;
  }
  const { promise, resolve } = Promise.withResolvers<void>();
  const onSignal = () => resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  // SIGHUP reloads the policy files, as file changes do
  const running = monitor;
  const onHup = () => void running.reload();
  Deno.addSignalListener("SIGHUP", onHup);
  await promise;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  Deno.removeSignalListener("SIGHUP", onHup);
  console.error("info monitor.stopping");
  const undelivered = await monitor.stop();
  // alerts that could not be delivered are counted and logged; say so in the exit code too
  return undelivered > 0 ? 3 : 0;
}
