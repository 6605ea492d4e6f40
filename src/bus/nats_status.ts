/**
 * How a NATS connection is doing, as `NatsBus` (./nats_bus.ts) reports it: connected
 * or not (the client's status events), delivering or not (a liveness probe: a
 * PING whose PONG is read by the same loop as the messages), and the last
 * error seen ({@linkcode BusHealth}).
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { BusHealth } from "./bus.ts";

/** The parts of a connection {@linkcode NatsStatusWatch} reads. */
export type NatsStatusSource = Pick<NatsConnection, "status" | "flush" | "isClosed">;

/** Options of {@linkcode NatsStatusWatch}. */
export interface NatsStatusWatchOptions {
  /** Called on connection status changes (disconnect, reconnect, errors, failed probes). */
  onStatus?: (event: { type: string; detail: string }) => void;
  /**
   * Liveness probe: every `intervalMs` a PING goes out, and the connection
   * counts as not delivering when its PONG is not back within `timeoutMs`
   * (defaults 2000 and 3000; `intervalMs: 0` turns the probe off).
   */
  probe?: { intervalMs?: number; timeoutMs?: number };
  /** Whether the bus is closing: the close status event that ends it is then not a fault. */
  closing: () => boolean;
  /** Called with the error of each `error` status event, before it is noted and reported. */
  onServerError: (err: Error) => void;
}

/**
 * Watches a connection's status events and probes it, from construction
 * until {@linkcode NatsStatusWatch.stop} (the status events end with the
 * connection).
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * const nc = await connect({ servers: "127.0.0.1:4222" });
 * const status = new NatsStatusWatch(nc, {
 *   onStatus: (e) => console.log(e.type, e.detail),
 *   closing: () => false,
 *   onServerError: () => {},
 * });
 * status.health; // { connected: true, delivering: true }
 * status.stop();
 * await nc.close();
 * ```
 */
export class NatsStatusWatch {
  readonly #nc: NatsStatusSource;
  readonly #opts: NatsStatusWatchOptions;
  #connected = true;
  #delivering = true;
  #lastError: { message: string; at: string } | undefined;
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  #probing = false;

  constructor(nc: NatsStatusSource, opts: NatsStatusWatchOptions) {
    this.#nc = nc;
    this.#opts = opts;
    this.#watchStatus(opts.onStatus);
    const intervalMs = opts.probe?.intervalMs ?? 2000;
    if (intervalMs > 0) {
      this.#probeTimer = setInterval(() => this.#probe(opts.probe?.timeoutMs ?? 3000), intervalMs);
    }
  }

  /** Connected, answering the liveness probe, and the last error seen. */
  get health(): BusHealth {
    return {
      connected: this.connected,
      delivering: this.connected && this.#delivering,
      ...(this.#lastError ? { lastError: { ...this.#lastError } } : {}),
    };
  }

  /** Connected (no `disconnect` since the last `reconnect`) and not closed. */
  get connected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }

  /** Keep `message`, with the time now, as the last error seen. */
  noteError(message: string): void {
    this.#lastError = { message, at: new Date().toISOString() };
  }

  /** Stop the liveness probe. */
  stop(): void {
    clearInterval(this.#probeTimer);
  }

  /** One PING/PONG round trip, bounded; a PONG that does not come back means nothing does. */
  async #probe(timeoutMs: number): Promise<void> {
    if (this.#probing || !this.connected) return;
    this.#probing = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#nc.flush(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(`liveness probe: expected a PONG within ${timeoutMs} ms, found none`),
              ),
            timeoutMs,
          );
        }),
      ]);
      this.#delivering = true;
    } catch (err) {
      if (this.#nc.isClosed() || !this.#connected) return;
      const was = this.#delivering;
      this.#delivering = false;
      this.noteError((err as Error).message);
      if (was) this.#opts.onStatus?.({ type: "probe", detail: (err as Error).message });
    } finally {
      clearTimeout(timer);
      this.#probing = false;
    }
  }

  async #watchStatus(onStatus?: NatsStatusWatchOptions["onStatus"]): Promise<void> {
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect") this.#connected = false;
      if (s.type === "reconnect") this.#connected = true;
      if (s.type === "ping" || s.type === "reconnecting") continue;
      if (s.type === "error") this.#opts.onServerError(s.error);
      const detail = "server" in s ? String(s.server) : "error" in s ? String(s.error) : "";
      // the end of close(): not a fault unless it carries an error
      if (s.type === "close" && this.#opts.closing() && !detail) continue;
      if (s.type !== "reconnect" && s.type !== "update" && s.type !== "ldm") {
        this.noteError(`${s.type}${detail ? `: ${detail}` : ""}`);
      }
      onStatus?.({ type: s.type, detail });
    }
  }
}
