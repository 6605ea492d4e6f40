/**
 * The first connection to NATS, waited for as long as it takes but
 * abortable: the client's own `waitOnFirstConnect` retries forever with no
 * way to stop it, so a sidecar told to stop while its broker is still away
 * could not. Here each attempt is one pass over the servers and the wait
 * between attempts ends at once when the signal aborts.
 *
 * @module
 */
import type { ConnectionOptions, NatsConnection } from "@nats-io/transport-node";
import { connectNats, type NatsTransportKind } from "./nats_connect.ts";

/**
 * The wait for the first NATS connection was stopped by its signal; `cause`
 * is the last connection error seen, if any.
 *
 * @example
 * ```ts
 * const err = new NatsConnectAbortedError("nats://127.0.0.1:4222", 3);
 * err.message; // "stopped while waiting for NATS at nats://127.0.0.1:4222 (3 attempts)"
 * ```
 */
export class NatsConnectAbortedError extends Error {
  override name = "NatsConnectAbortedError";
  constructor(readonly url: string, readonly attempts: number, cause?: unknown) {
    super(`stopped while waiting for NATS at ${url} (${attempts} attempts)`, { cause });
  }
}

/** Options for {@linkcode connectWhenAnswered}. */
export interface FirstConnectOptions {
  /** Milliseconds between attempts (default 500). */
  retryMs?: number;
  /** Stops the wait: the promise rejects with {@linkcode NatsConnectAbortedError}. */
  signal?: AbortSignal;
  /** The socket layer (default: `LATENTWATCH_NATS_TRANSPORT`, else `deno`; see ./nats_connect.ts). */
  transport?: NatsTransportKind;
}

/**
 * Connect with `options`, retrying every `retryMs` after any error until a
 * server answers or `signal` aborts. An attempt still in flight when the
 * signal aborts is closed as soon as it ends, so nothing is left open.
 *
 * @example
 * ```ts
 * const stop = new AbortController();
 * const nc = await connectWhenAnswered(
 *   { servers: ["nats://127.0.0.1:4222"] },
 *   { signal: stop.signal },
 * );
 * await nc.close();
 * ```
 */
export async function connectWhenAnswered(
  options: ConnectionOptions,
  opts: FirstConnectOptions = {},
): Promise<NatsConnection> {
  const { signal } = opts;
  const url = [options.servers ?? []].flat().join(",");
  let attempts = 0;
  let lastError: unknown;
  const aborted = () => new NatsConnectAbortedError(url, attempts, lastError);
  while (true) {
    if (signal?.aborted) throw aborted();
    attempts++;
    const attempt = connectNats({ ...options, waitOnFirstConnect: false }, opts.transport);
    try {
      const nc = await raceAbort(attempt, signal);
      if (nc === ABORTED) {
        // closed once it ends; a failed attempt needs nothing
        attempt.then((late) => late.close(), () => {});
        throw aborted();
      }
      return nc;
    } catch (err) {
      if (err instanceof NatsConnectAbortedError) throw err;
      lastError = err;
    }
    if (await raceAbort(sleep(opts.retryMs ?? 500, signal), signal) === ABORTED) throw aborted();
  }
}

const ABORTED = Symbol("aborted");

/** `p`, or {@linkcode ABORTED} as soon as `signal` aborts. */
function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T | typeof ABORTED> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Resolve after `ms`, or at once (leaving no timer) when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
