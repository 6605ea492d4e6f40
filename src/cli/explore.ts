/**
 * `latentwatch explore <trace>... --monitor <file> [--listen 127.0.0.1:8790]
 * [--write] [--positives <trace>...]`: the policy author's workbench over
 * recorded traces, on a local listener (docs/workbench.md).
 *
 * @module
 */
import { loadTraceSource } from "../workbench/load.ts";
import { workbenchApi } from "../workbench/api.ts";
import { isLoopback } from "../workbench/auth.ts";
import { Logger } from "../shared/log.ts";
import { commandFailed, parseCommandArgs, usageError } from "./common.ts";
import { progressText } from "./policy_format.ts";

const USAGE =
  `usage: latentwatch explore <trace>... --monitor <monitor.yaml> [--listen 127.0.0.1:8790]
                           [--write] [--positives <trace>...]

  Load the traces through the monitor's SAEs and policies and serve the
  workbench (docs/workbench.md) on a loopback address until SIGINT/SIGTERM.

  --monitor <file>     the monitor whose SAEs, labels and policies are shown
  --listen host:port   where to listen (default 127.0.0.1:8790; loopback only)
  --write              let the page save policy files (PUT /ui/api/policy)
  --positives <trace>  a trace of positive requests (threshold curves' detection), repeatable`;

/**
 * Run `explore ...`; resolves with the exit code once the listener stops
 * (`signal` aborts it, else SIGINT/SIGTERM).
 *
 * @example
 * ```ts
 * await runExploreCommand([".latentwatch/demo/demo.trace.gz", "--monitor", "monitors/demo.yaml"]);
 * ```
 */
export async function runExploreCommand(
  args: string[],
  opts: { signal?: AbortSignal } = {},
): Promise<number> {
  const parsed = parseCommandArgs("explore", USAGE, args, {
    monitor: { type: "string" },
    listen: { type: "string" },
    write: { type: "boolean" },
    positives: { type: "string", multiple: true },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals.length === 0 || !values.monitor) {
    return usageError("explore", USAGE, "expected at least one trace and --monitor <file>");
  }
  const listen = values.listen ?? "127.0.0.1:8790";
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i);
  const port = Number(listen.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    return usageError("explore", USAGE, `--listen: expected host:port, found '${listen}'`);
  }
  if (!isLoopback(host)) {
    return usageError(
      "explore",
      USAGE,
      `--listen: expected a loopback address (127.0.0.1, ::1, localhost), found '${host}'`,
    );
  }
  let source;
  let rejected = 0;
  let firstRejection = "";
  try {
    const started = Date.now();
    source = await loadTraceSource(values.monitor, positionals, {
      log: new Logger(),
      positives: values.positives ?? [],
      onProgress: (p) => console.error(`explore: ${p.path}: ${progressText(p)}`),
      onRejected: ({ record, error }) => {
        if (rejected++ === 0) firstRejection = `record ${record.record}: ${error.message}`;
      },
    });
    if (rejected > 0) {
      console.error(
        `explore: warning: ${rejected} frame(s) rejected by the monitor and skipped (first: ${firstRejection})`,
      );
    }
    const s = source.store;
    console.error(
      `explore: ${s.requests.size} request(s) from ${s.paths.length} trace(s) in ${
        ((Date.now() - started) / 1000).toFixed(1)
      } s`,
    );
  } catch (err) {
    return commandFailed("explore", err);
  }
  const app = workbenchApi(source, { writable: values.write === true });
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  opts.signal?.addEventListener("abort", onSignal);
  try {
    const server = Deno.serve({
      hostname: host.replace(/^\[|\]$/g, ""),
      port,
      signal: stop.signal,
      onListen: ({ hostname, port }) => {
        const h = hostname.includes(":") ? `[${hostname}]` : hostname;
        console.log(`workbench: http://${h}:${port}/ui/`);
      },
    }, app.fetch);
    await server.finished;
    return 0;
  } catch (err) {
    return commandFailed("explore", err);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await source.store.monitor.close();
  }
}
