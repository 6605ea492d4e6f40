/**
 * latentwatch entry point: `deno task latentwatch <command> ...`.
 * Wires the adapters (NATS, onnxruntime, HTTP) around the pure core; each
 * command lives in its own module under `src/cli/`.
 *
 * @module
 */

const USAGE = `latentwatch: watch a served model's activations through SAEs and policies

usage: deno task latentwatch <command> [options]

commands:
  sae inspect <path> [--latent N]     format, architecture, d_in, d_sae, hook, dtype (a latent's label)
  sae encode <path> --input <a.npy>   one JSON line per token: {"token", "latents"}
  sae eval <path> --input <a.npy>     reconstruction MSE, FVU, mean L0, dead latents
  probe score <path> --input <a.npy>  one JSON line per token: {"token", "scores"}
  policy lint <file>...               validate policy files (file:line:col errors and warnings)
  policy test <path>...               run the rule tests beside policy files (recorded traces)
  policy calibrate --monitor <file> --traces <t>... --target-fpr <f>
                                      suggest thresholds for a false-positive target
  replay <trace> --monitor <file>     run a monitor offline over a recorded trace
  trace export <trace> --request <id> a request's activations (.npy), frames or latents (JSON lines)
        [--format npy|frames|latents] [--out <file>] [--monitor <file>]; --list: the requests
  trace publish <trace> --url <nats>  replay a trace's frames into NATS as a tap would, paced
        [--rate N | --timing recorded] [--speed X] [--max-frames N] [--max-seconds S] [--loop]
  explore <trace>... --monitor <file> the policy author's workbench over traces, in a browser
        [--listen 127.0.0.1:8790]     its local address (loopback only)
        [--write] [--positives <t>...] save policy files; traces of positive requests
  alerts tail [--min-severity high]   follow the JetStream alert stream, filtered
  serve --monitor <file>              run a monitor: frames in over NATS, alerts out
        [--state-dir <dir>]           spool, checkpoints, recordings (default: $STATE_DIRECTORY,
                                      else $XDG_STATE_HOME/latentwatch, else ~/.local/state/latentwatch)
        [--log-format text|json]      log lines as text (default) or one JSON object each
        [--listen host:port]          the control API's address (overrides control.listen)
        [--check]                     load and check everything, connect nowhere; exit 0 or 1
  demo                                the whole pipeline on an embedded default
  version, --version                  latentwatch's version and Deno's, V8's, TypeScript's, onnxruntime's
`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  sae: async () => (await import("./cli/sae.ts")).runSaeCommand,
  probe: async () => (await import("./cli/probe.ts")).runProbeCommand,
  policy: async () => (await import("./cli/policy.ts")).runPolicyCommand,
  alerts: async () => (await import("./cli/alerts.ts")).runAlertsCommand,
  serve: async () => (await import("./cli/serve.ts")).runServeCommand,
  replay: async () => (await import("./cli/replay.ts")).runReplayCommand,
  trace: async () => (await import("./cli/trace.ts")).runTraceCommand,
  explore: async () => (await import("./cli/explore.ts")).runExploreCommand,
  demo: async () => (await import("./demo/demo.ts")).runDemoCommand,
  version: async () => (await import("./cli/version.ts")).runVersionCommand,
  "--version": async () => (await import("./cli/version.ts")).runVersionCommand,
};

/** Run the CLI with `args` and return the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`latentwatch: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  return await (await load())(rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
