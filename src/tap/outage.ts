/**
 * What the TypeScript tap publishes through, so that a NATS outage loses
 * only what it has to, and says how much.
 *
 * nats.js (`@nats-io/transport-node` 3.x) reconnects by itself, but what is
 * published while it is disconnected goes into its outbound buffer, which is
 * unbounded and emptied at every connection attempt: those messages are
 * lost without a trace. {@linkcode OutagePublisher} therefore holds
 * publishes itself while the bus says it is not connected, in a buffer
 * bounded in messages and bytes, and sends them, in order and before any new
 * one, once the bus is back. What does not fit is dropped and counted.
 * Messages handed to the client shortly before the disconnect may still be
 * lost with the connection: every `confirmEveryMs` a flush (PING/PONG)
 * confirms what was written before it, and what was not confirmed when the
 * disconnect is seen is counted as `inDoubt` (an upper bound of that loss).
 *
 * @module
 */
import type { Bus } from "../bus/bus.ts";

/** Limits of {@linkcode OutagePublisher}. */
export interface OutageOptions {
  /** Messages held during an outage at most (default 65 536; 0 holds nothing). */
  maxMessages?: number;
  /** Bytes (payload plus header text) held at most (default 8 MiB). */
  maxBytes?: number;
  /** Milliseconds between flushes that confirm what was written (default 100; 0: none). */
  confirmEveryMs?: number;
  /** Milliseconds between checks for the reconnect while messages are held (default 50). */
  pollMs?: number;
  /**
   * Milliseconds to go on holding after the bus is back (default 0), so that
   * subscribers that reconnect later (a sidecar) are back for the replay.
   */
  replayDelayMs?: number;
}

/** Counters of {@linkcode OutagePublisher} (all start at 0). */
export interface OutageStats {
  /** Outages seen (the bus said it was disconnected). */
  disconnects: number;
  /** Outages over (the bus was connected again). */
  reconnects: number;
  /** Publishes held during outages, and their bytes. */
  buffered: number;
  bufferedBytes: number;
  /** Held publishes sent after a reconnect. */
  replayed: number;
  /** Publishes lost because the buffer was full (or left in it at close), and their bytes. */
  dropped: number;
  droppedBytes: number;
  /** Publishes handed to the client before an outage and not confirmed by a flush. */
  inDoubt: number;
  /** Milliseconds spent disconnected, over all outages. */
  outageMs: number;
  /** Gated steps during an outage: their frame held, the failure mode applied at once. */
  gateOffline: number;
}

/** All-zero {@linkcode OutageStats}. */
export function emptyOutageStats(): OutageStats {
  return {
    disconnects: 0,
    reconnects: 0,
    buffered: 0,
    bufferedBytes: 0,
    replayed: 0,
    dropped: 0,
    droppedBytes: 0,
    inDoubt: 0,
    outageMs: 0,
    gateOffline: 0,
  };
}

interface Held {
  subject: string;
  data: Uint8Array;
  headers?: Record<string, string>;
  bytes: number;
}

function sizeOf(data: Uint8Array, headers?: Record<string, string>): number {
  let n = data.length;
  for (const [k, v] of Object.entries(headers ?? {})) n += k.length + v.length + 4;
  return n;
}

/**
 * Publishes to a {@linkcode Bus}, holding them (bounded) while it is disconnected.
 *
 * @example
 * ```ts
 * import type { Bus } from "../bus/bus.ts";
 * declare const bus: Bus;
 * const out = new OutagePublisher(bus, { maxMessages: 10_000 }, "my-tap");
 * out.publish("latentwatch.tap.v1.m.h.0", new Uint8Array(4), { "Lw-Seq": "0" });
 * console.log(out.stats.dropped, out.held);
 * out.close();
 * ```
 */
export class OutagePublisher {
  readonly stats: OutageStats = emptyOutageStats();
  readonly #bus: Bus;
  readonly #name: string;
  readonly #maxMessages: number;
  readonly #maxBytes: number;
  readonly #confirmEveryMs: number;
  readonly #pollMs: number;
  readonly #replayDelayMs: number;
  #upSince: number | undefined;
  readonly #held: Held[] = [];
  #heldBytes = 0;
  #down = false;
  #downSince = 0;
  #warned = false;
  /** Connection generation: a flush confirms only what its own connection carried. */
  #gen = 0;
  #written = 0;
  #confirmed = 0;
  /**
   * What the flush before the last one confirmed: a server answers once it
   * has read what came before, and one shutting down can still lose that;
   * only what was confirmed a confirmation earlier counts as delivered.
   */
  #settled = 0;
  #confirming = false;
  #lastConfirm = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(bus: Bus, opts: OutageOptions = {}, name = "tap") {
    this.#bus = bus;
    this.#name = name;
    const int = (v: number | undefined, dflt: number, what: string): number => {
      const n = v ?? dflt;
      if (!Number.isSafeInteger(n) || n < 0) {
        throw new RangeError(`tap outage.${what}: expected an integer ≥ 0, found ${v}`);
      }
      return n;
    };
    this.#maxMessages = int(opts.maxMessages, 65_536, "maxMessages");
    this.#maxBytes = int(opts.maxBytes, 8 * 1024 * 1024, "maxBytes");
    this.#confirmEveryMs = int(opts.confirmEveryMs, 100, "confirmEveryMs");
    this.#pollMs = int(opts.pollMs, 50, "pollMs") || 50;
    this.#replayDelayMs = int(opts.replayDelayMs, 0, "replayDelayMs");
  }

  /** Publishes held now. */
  get held(): number {
    return this.#held.length;
  }

  /** True while the bus is connected (as far as the publisher has seen). */
  get connected(): boolean {
    return this.#check();
  }

  /**
   * Publish now, or hold it during an outage. Returns false when it was
   * dropped (the buffer is full; counted in `dropped`).
   */
  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): boolean {
    if (this.#check()) {
      this.#send(subject, data, headers);
      return true;
    }
    const bytes = sizeOf(data, headers);
    if (
      this.#held.length + 1 > this.#maxMessages || this.#heldBytes + bytes > this.#maxBytes
    ) {
      this.stats.dropped++;
      this.stats.droppedBytes += bytes;
      if (!this.#warned) {
        this.#warned = true;
        console.error(
          `tap ${this.#name}: NATS outage: expected room in the outage buffer, found it full ` +
            `(${this.#held.length} messages, ${this.#heldBytes} bytes; limits ${this.#maxMessages}, ` +
            `${this.#maxBytes}); dropping publishes until the reconnect (counted in dropped)`,
        );
      }
      return false;
    }
    this.#held.push({ subject, data, headers, bytes });
    this.#heldBytes += bytes;
    this.stats.buffered++;
    this.stats.bufferedBytes += bytes;
    return true;
  }

  /** Stop the timers; what is still held is counted as dropped. */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#held.length > 0) {
      this.stats.dropped += this.#held.length;
      this.stats.droppedBytes += this.#heldBytes;
      console.error(
        `tap ${this.#name}: closed with ${this.#held.length} publishes held for the reconnect ` +
          `(counted in dropped)`,
      );
      this.#held.length = 0;
      this.#heldBytes = 0;
    }
  }

  #send(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    this.#bus.publish(subject, data, headers);
    this.#written++;
    const now = performance.now();
    if (
      this.#confirmEveryMs > 0 && !this.#confirming &&
      now - this.#lastConfirm >= this.#confirmEveryMs
    ) {
      this.#confirming = true;
      this.#lastConfirm = now;
      const gen = this.#gen;
      const mark = this.#written;
      this.#bus.flush().then(
        () => {
          if (gen !== this.#gen) return;
          this.#settled = this.#confirmed;
          this.#confirmed = Math.max(this.#confirmed, mark);
        },
        () => {}, // the connection dropped: what it carried stays unconfirmed
      ).finally(() => this.#confirming = false);
    }
  }

  /** Follow the bus's state; on the way back, replay what is held. True when connected. */
  #check(): boolean {
    const up = this.#bus.connected;
    if (up && this.#down && this.#replayDelayMs > 0) {
      this.#upSince ??= performance.now();
      if (performance.now() - this.#upSince < this.#replayDelayMs) return false;
    }
    this.#upSince = undefined;
    if (!up && !this.#down) {
      this.#down = true;
      this.#downSince = performance.now();
      this.stats.disconnects++;
      this.stats.inDoubt += Math.max(0, this.#written - this.#settled);
      this.#gen++;
      this.#written = this.#confirmed = this.#settled = 0;
      this.#timer ??= setInterval(() => this.#check(), this.#pollMs);
      Deno.unrefTimer(this.#timer);
      console.error(`tap ${this.#name}: NATS connection lost; holding publishes for the reconnect`);
    } else if (up && this.#down) {
      this.#down = false;
      this.#warned = false;
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.stats.reconnects++;
      const ms = performance.now() - this.#downSince;
      this.stats.outageMs += ms;
      const held = this.#held.splice(0);
      this.#heldBytes = 0;
      for (const h of held) this.#send(h.subject, h.data, h.headers);
      this.stats.replayed += held.length;
      console.error(
        `tap ${this.#name}: NATS connection back after ${Math.round(ms)} ms; ` +
          `${held.length} held publishes sent, ${this.stats.dropped} dropped so far`,
      );
    }
    return up;
  }
}
