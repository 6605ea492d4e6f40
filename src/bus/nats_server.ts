/**
 * Find and spawn a local `nats-server` (with JetStream) on a free loopback
 * port. Used by the tests, the demo and the bench; never by `serve`, which
 * connects to the operator's server.
 *
 * @module
 */

/** A running `nats-server` child process. */
export interface NatsServerProcess {
  url: string;
  port: number;
  /** JetStream store directory (kept across {@linkcode restart}). */
  storeDir: string;
  /** Stop the server (SIGTERM, then SIGKILL after 2 s). */
  stop(): Promise<void>;
  /** Start it again on the same port and store. */
  restart(): Promise<void>;
  /** Send `sig` to the server (tests pause it with `SIGSTOP` and wake it with `SIGCONT`). */
  signal(sig: Deno.Signal): void;
  /** The running server's process id (null while stopped): the bench reads its CPU time. */
  readonly pid: number | null;
}

/** Locations searched for the binary, after `$NATS_SERVER` and `PATH`. */
const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/**
 * Path of the `nats-server` binary, or null when none is installed.
 *
 * @example
 * ```ts
 * const bin = await findNatsServer(); // "/usr/sbin/nats-server" or null
 * ```
 */
export async function findNatsServer(): Promise<string | null> {
  const fromEnv = Deno.env.get("NATS_SERVER");
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) =>
    `${d}/nats-server`
  );
  for (const p of [fromEnv, ...dirs, ...CANDIDATES]) {
    if (!p) continue;
    try {
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago.
 *
 * @example
 * ```ts
 * const port = freePort(); // e.g. 41231
 * ```
 */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * `nats-server` could not be started: not found, exited at start (a bad
 * configuration; `exitCode` and the end of its `stderr`), or did not listen
 * in time (`cause`: the last connection error).
 *
 * @example
 * ```ts
 * try {
 *   await startNatsServer({ configFile: "deploy/nats/nats-server.conf" });
 * } catch (err) {
 *   if (err instanceof NatsServerStartError) console.error(err.exitCode, err.stderr);
 * }
 * ```
 */
export class NatsServerStartError extends Error {
  override name = "NatsServerStartError";
  constructor(
    message: string,
    /** The end of what the server wrote to stderr ("" when it never ran). */
    readonly stderr = "",
    /** Its exit status, when it exited at start. */
    readonly exitCode: number | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Options of {@linkcode startNatsServer}. */
export interface StartNatsServerOptions {
  /** Listen here (a free loopback port when absent). */
  port?: number;
  /** JetStream store directory (a fresh temporary one when absent). */
  storeDir?: string;
  /** A server configuration file (`-c`). */
  configFile?: string;
  /**
   * Variables added to the server's environment (it inherits ours): the
   * benches give the broker one Go processor and a schedule trace
   * (`bench/harness.ts`).
   */
  env?: Record<string, string>;
}

/**
 * Spawn `nats-server -js` on a free loopback port and wait until it accepts
 * connections. Throws with an install hint when the binary is missing.
 *
 * @example
 * ```ts
 * const srv = await startNatsServer();
 * // ... connect to srv.url ...
 * await srv.stop();
 * ```
 */
export async function startNatsServer(
  opts: StartNatsServerOptions = {},
): Promise<NatsServerProcess> {
  const bin = await findNatsServer();
  if (!bin) {
    throw new NatsServerStartError(
      "nats-server not found: install it (Debian: `apt-get install nats-server`) or set NATS_SERVER",
    );
  }
  const port = opts.port ?? freePort();
  const storeDir = opts.storeDir ?? await Deno.makeTempDir({ prefix: "latentwatch-nats-" });
  let child: Deno.ChildProcess | null = null;

  const spawn = async () => {
    const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir];
    if (opts.configFile) args.push("-c", opts.configFile);
    const started = new Deno.Command(bin, {
      args,
      stdout: "null",
      stderr: "piped",
      ...(opts.env ? { env: opts.env } : {}),
    }).spawn();
    child = started;
    // a server that exits at once (a bad configuration) is reported at once
    let exitCode: number | null = null;
    started.status.then((s) => exitCode = s.code).catch(() => {});
    // drain stderr so the pipe never fills; keep the tail for error messages
    const tail: string[] = [];
    (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child!.stderr) {
        tail.push(dec.decode(chunk));
        if (tail.length > 20) tail.shift();
      }
    })().catch(() => {});
    const deadline = Date.now() + 10_000;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (exitCode !== null) {
        await new Promise((r) => setTimeout(r, 20)); // let the stderr tail arrive
        child = null;
        throw new NatsServerStartError(
          `nats-server exited with code ${exitCode} at start:\n${tail.join("")}`,
          tail.join(""),
          exitCode,
        );
      }
      try {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        c.close();
        return;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new NatsServerStartError(
      `nats-server did not listen on 127.0.0.1:${port} within 10 s:\n${tail.join("")}`,
      tail.join(""),
      null,
      { cause: lastError },
    );
  };

  const stop = async () => {
    const c = child;
    if (!c) return;
    child = null;
    try {
      c.kill("SIGTERM");
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
    }, 2000);
    await c.status;
    clearTimeout(timer);
  };

  await spawn();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    stop,
    restart: async () => {
      await stop();
      await spawn();
    },
    signal: (sig) => {
      const c = child as Deno.ChildProcess | null;
      c?.kill(sig);
    },
    get pid() {
      return (child as Deno.ChildProcess | null)?.pid ?? null;
    },
  };
}
