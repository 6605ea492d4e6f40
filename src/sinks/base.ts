/**
 * What the syslog, webhook, stdout and file sinks share: an
 * {@linkcode AlertSink} over a {@linkcode DeliveryQueue} of prepared alerts.
 * An alert is rendered when it is submitted (so a rendering failure or an
 * oversized message is counted at once, and a queued alert costs its bytes
 * only); drops are logged as errors and reported to `onDrop`.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Bus } from "../bus/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import { type DeliverFn, DeliveryQueue, type DeliveryQueueOptions } from "./queue.ts";
import type { AlertSink, SinkStats } from "./sink.ts";
import type { SpoolOptions } from "./spool.ts";

/** What every sink needs from the sidecar. */
export interface SinkDeps {
  log: Logger;
  /** Host name written in syslog headers and Splunk events (default: `Deno.hostname()`). */
  hostname?: string;
  /** Environment lookup for secrets named in the config (default: `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** Called for every alert a sink gives up on, after it is counted (for metrics). */
  onDrop?: (sink: string, alert: Alert, reason: string) => void;
  /** The alert stream, for `type: jetstream` sinks (rendered publications). */
  jetstream?: RenderedStreamDeps;
  /** HMAC key of `redact: hash` (monitor `redaction.hash_key_env`); absent: plain SHA-256. */
  redactHashKey?: string;
}

/** Where `type: jetstream` sinks publish: the sidecar's bus and alert stream. */
export interface RenderedStreamDeps {
  bus: Bus;
  /** The alert stream (`alerts.stream`); each sink adds its subject to it. */
  stream: string;
  duplicateWindowMs: number;
  /** Spool folder of the native alerts; each rendered sink spools in a subfolder of it. */
  spoolDir?: string;
  /**
   * Settings of each rendered sink's spool, as for the native alerts'
   * (`alerts.spool.fsync`): a rendered publication is as durable as the
   * native one.
   */
  spool?: SpoolOptions;
  /**
   * Where each rendered sink counts its drops, publishes, retries and queue
   * depth, every series labelled `sink` with the sink's name (see
   * `JetStreamSinkOptions.telemetry` in `src/sinks/jetstream.ts`).
   */
  telemetry?: Telemetry;
}

/** An alert rendered for one sink. */
export interface Prepared<P = Uint8Array> {
  alert: Alert;
  payload: P;
  /** Size that `maxMessageBytes` is checked against. */
  bytes: number;
}

/** Settings every queued sink takes. */
export interface QueuedSinkOptions extends Omit<DeliveryQueueOptions, "onDrop" | "onRetry"> {
  name: string;
  /** Rendered alerts larger than this are dropped as `too_large` (default: no limit). */
  maxMessageBytes?: number;
}

/**
 * Base of the queued sinks: `prepare` renders, `deliver` sends a batch.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * class NullSink extends QueuedSink<string> {
 *   protected prepare(alert: Alert) { return { alert, payload: alert.id, bytes: 32 }; }
 *   protected deliver() { return Promise.resolve(); }
 * }
 * ```
 */
export abstract class QueuedSink<P = Uint8Array> implements AlertSink {
  readonly name: string;
  protected readonly log: Logger;
  protected readonly queue: DeliveryQueue<Prepared<P>>;
  readonly #maxBytes: number;

  constructor(opts: QueuedSinkOptions, deps: SinkDeps) {
    this.name = opts.name;
    this.log = deps.log;
    this.#maxBytes = opts.maxMessageBytes ?? Infinity;
    const deliver: DeliverFn<Prepared<P>> = (batch, signal, attempt) =>
      this.deliver(batch, signal, attempt);
    this.queue = new DeliveryQueue(deliver, {
      ...opts,
      onDrop: (item, reason, error) => {
        const { alert } = item as Prepared<P>;
        this.log.error("alert.sink_dropped", {
          sink: this.name,
          reason,
          alert: alert.id,
          rule: alert.policy.id,
          request: alert.requestId,
          error,
        });
        deps.onDrop?.(this.name, alert, reason);
      },
      onRetry: (attempt, delayMs, error) =>
        this.log.warn("alert.sink_retry", {
          sink: this.name,
          attempt,
          retry_in_ms: delayMs,
          error,
        }),
    });
  }

  /** Render `alert` for this sink (throw to drop it as `render_failed`). */
  protected abstract prepare(alert: Alert): Prepared<P>;
  /** Send `batch`; see {@linkcode DeliverFn}. */
  protected abstract deliver(
    batch: Prepared<P>[],
    signal: AbortSignal,
    attempt: number,
  ): Promise<void>;

  get stats(): SinkStats {
    return this.queue.stats;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  submit(alert: Alert): boolean {
    let item: Prepared<P>;
    try {
      item = this.prepare(alert);
    } catch (err) {
      const placeholder = { alert, payload: undefined as P, bytes: 0 };
      this.queue.drop([placeholder], "render_failed", (err as Error).message);
      return false;
    }
    if (item.bytes > this.#maxBytes) {
      this.queue.drop(
        [item],
        "too_large",
        `expected at most ${this.#maxBytes} bytes, found ${item.bytes}`,
      );
      return false;
    }
    return this.queue.submit(item);
  }

  drain(timeoutMs: number): Promise<number> {
    return this.queue.drain(timeoutMs);
  }

  close(): Promise<void> {
    this.queue.abandon();
    return Promise.resolve();
  }
}

/**
 * Race `p` against `signal`: rejects with the signal's reason when it aborts
 * first. `p` keeps running; `onLate` receives its value if it arrives after
 * (to close a connection nobody will use).
 *
 * @example
 * ```ts
 * declare const signal: AbortSignal;
 * const conn = await raceSignal(Deno.connect({ port: 514 }), signal, (c) => c.close());
 * ```
 */
export function raceSignal<T>(
  p: Promise<T>,
  signal: AbortSignal,
  onLate?: (value: T) => void,
): Promise<T> {
  if (signal.aborted) {
    p.then((v) => onLate?.(v), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const onAbort = () => {
      if (done) return;
      done = true;
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then((v) => {
      signal.removeEventListener("abort", onAbort);
      if (done) return onLate?.(v);
      done = true;
      resolve(v);
    }, (err) => {
      signal.removeEventListener("abort", onAbort);
      if (done) return;
      done = true;
      reject(err);
    });
  });
}

/**
 * Serialises writes to one byte stream (stdout, a file) so lines never
 * interleave, and issues each batch's write once: a retry after a timeout
 * waits for the write already under way instead of writing the batch again
 * (which would duplicate its lines).
 */
export class OnceWriter<K extends object> {
  #tail: Promise<void> = Promise.resolve();
  #issued = new WeakMap<K, Promise<void>>();

  /** Run `write` for `key` after every earlier write; again only if the earlier one failed. */
  write(key: K, write: () => Promise<void>): Promise<void> {
    let w = this.#issued.get(key);
    if (!w) {
      w = this.#tail.then(write);
      this.#issued.set(key, w);
      // a failed write is issued afresh on the next attempt
      w.catch(() => this.#issued.delete(key));
      this.#tail = w.catch(() => {});
    }
    return w;
  }

  /** Resolves once every write issued so far has settled. */
  settled(): Promise<void> {
    return this.#tail;
  }
}

/** Write all of `bytes` to `w` (Deno writers may write part of a buffer). */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/**
 * The payloads of `batch`, back to back in one buffer.
 *
 * @example
 * ```ts
 * concat([{ payload: new Uint8Array([1]) }, { payload: new Uint8Array([2, 3]) }]); // [1, 2, 3]
 * ```
 */
export function concat(batch: { payload: Uint8Array }[]): Uint8Array {
  if (batch.length === 1) return batch[0].payload;
  let n = 0;
  for (const b of batch) n += b.payload.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const b of batch) {
    out.set(b.payload, off);
    off += b.payload.length;
  }
  return out;
}
