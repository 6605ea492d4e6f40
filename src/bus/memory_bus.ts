/**
 * An in-process {@linkcode Bus}, used ONLY by the zero-setup demo when no
 * `nats-server` is installed. Production and the test suite's integration
 * tests run on a real NATS server ({@linkcode ./nats_bus.ts}).
 *
 * It mimics what the pipeline relies on from NATS: subject wildcards (`*` one
 * token, `>` the rest), a max payload counting headers and payload, and a
 * JetStream-like durable stream with `Nats-Msg-Id` dedup inside a duplicate
 * window. Delivery is synchronous: `publish` hands the message to every
 * matching subscriber before it returns, in publish order (see
 * {@linkcode MemoryBus.publish} for publishes made from inside a handler).
 * Subject syntax and matching are in {@linkcode ./memory_subjects.ts}, the
 * streams in {@linkcode ./memory_stream.ts}.
 *
 * @module
 */
import { headerWireBytes } from "../core/frame/encode.ts";
import {
  type Bus,
  type BusMessage,
  BusRequestError,
  type BusSubscription,
  checkRequestTimeout,
  type DurableAck,
  type StreamSpec,
  type SubscribeOptions,
} from "./bus.ts";
import { MemoryStream, type StoredMessage, StreamError } from "./memory_stream.ts";
import { splitSubject, subjectMatches } from "./memory_subjects.ts";

export { type StoredMessage, StreamError } from "./memory_stream.ts";
export { SubjectError } from "./memory_subjects.ts";

/** A message (headers + payload) is larger than the bus's max payload, as NATS refuses it. */
export class MaxPayloadError extends RangeError {
  constructor(readonly subject: string, readonly size: number, readonly maxPayload: number) {
    super(
      `publish on '${subject}': max_payload size exceeded: expected at most ${maxPayload} bytes ` +
        `(headers + payload), found ${size}`,
    );
    this.name = "MaxPayloadError";
  }
}

/** The bus was closed. */
export class BusClosedError extends TypeError {
  constructor(operation: string) {
    super(`${operation}: expected an open bus, found it closed`);
    this.name = "BusClosedError";
  }
}

/** Options of {@linkcode MemoryBus}. */
export interface MemoryBusOptions {
  /** Largest message, headers included, in bytes (default 1 MiB, as nats-server). */
  maxPayload?: number;
  /** Messages kept per stream; the oldest are discarded past it (default 10 000). */
  streamMaxMessages?: number;
  /** Clock for stream times and the duplicate window (default `Date.now`). */
  now?: () => number;
  /** Called when a subscriber's handler throws (default: `console.error`). */
  onHandlerError?: (err: unknown, msg: BusMessage) => void;
}

interface Sub {
  tokens: string[];
  handler: (msg: BusMessage) => void;
  active: boolean;
  /** Borrows its messages: handed a copy that is overwritten once it returns. */
  borrows: boolean;
}

/** What a borrowed message's bytes become once its handler returns (0xff bytes: f32 NaN). */
export const BORROWED_FILL = 0xff;

interface Pending {
  msg: BusMessage;
  subs: Sub[];
}

/**
 * In-process {@linkcode Bus} for the zero-setup demo only (when no
 * `nats-server` is installed).
 *
 * @example
 * ```ts
 * const bus = new MemoryBus({ maxPayload: 4096 });
 * bus.subscribe("latentwatch.tap.v1.*.*.*", (m) => console.log(m.subject));
 * bus.publish("latentwatch.tap.v1.gpt2.h.0", new Uint8Array(4), { "Lw-Version": "1" });
 * ```
 */
export class MemoryBus implements Bus {
  readonly maxPayload: number;
  readonly #streamMax: number;
  readonly #now: () => number;
  readonly #onHandlerError: (err: unknown, msg: BusMessage) => void;
  #subs: Sub[] = [];
  #streams = new Map<string, MemoryStream>();
  #queue: Pending[] = [];
  #delivering = false;
  #closed = false;

  constructor(opts: MemoryBusOptions = {}) {
    const maxPayload = opts.maxPayload ?? 1024 * 1024;
    if (!Number.isSafeInteger(maxPayload) || maxPayload < 1) {
      throw new RangeError(`maxPayload: expected a positive integer, found ${maxPayload}`);
    }
    this.maxPayload = maxPayload;
    this.#streamMax = opts.streamMaxMessages ?? 10_000;
    this.#now = opts.now ?? Date.now;
    this.#onHandlerError = opts.onHandlerError ??
      ((err, msg) => console.error(`memory bus: handler for '${msg.subject}' threw:`, err));
  }

  get connected(): boolean {
    return !this.#closed;
  }

  /**
   * Deliver to every matching subscription, synchronously, in publish order.
   * `data` is copied (once, shared by the subscribers, who must not mutate
   * it), so the caller may reuse its buffer. A publish made from inside a
   * handler is queued and delivered once the current message has reached
   * every subscriber, so all subscribers see messages in the same order.
   * A throwing handler is reported to `onHandlerError` and does not stop
   * delivery. Throws {@linkcode MaxPayloadError} above `maxPayload`.
   *
   * @example
   * ```ts
   * new MemoryBus().publish("a.b", new TextEncoder().encode("hi"));
   * ```
   */
  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    this.#checkOpen("publish");
    const tokens = splitSubject(subject, false);
    this.#checkSize(subject, data, headers);
    this.#enqueue(subject, tokens, data.slice(), headers);
  }

  #inboxes = 0;

  /**
   * Publish a request with a fresh `_INBOX.<n>` reply subject and resolve
   * with the first reply; rejects with {@linkcode BusRequestError} when no
   * subscription matches (no responders) or no reply comes in `timeoutMs`.
   *
   * @example
   * ```ts
   * declare const bus: MemoryBus;
   * const reply = await bus.request("svc.echo", new Uint8Array(0), undefined, 100);
   * ```
   */
  request(
    subject: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ): Promise<BusMessage> {
    let tokens: string[];
    try {
      // a request fails by rejecting, as on NATS, never by throwing
      this.#checkOpen("request");
      checkRequestTimeout(timeoutMs);
      tokens = splitSubject(subject, false);
      this.#checkSize(subject, data, headers);
    } catch (err) {
      return Promise.reject(err);
    }
    if (!this.#subs.some((s) => subjectMatches(s.tokens, tokens))) {
      return Promise.reject(new BusRequestError("no_responders", subject, timeoutMs));
    }
    const reply = `_INBOX.${++this.#inboxes}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new BusRequestError("timeout", subject, timeoutMs));
      }, timeoutMs);
      const sub = this.subscribe(reply, (msg) => {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve(msg);
      });
      this.#enqueue(subject, tokens, data.slice(), headers, reply);
    });
  }

  /**
   * Subscribe with a NATS filter (`*`, `>` wildcards).
   *
   * @example
   * ```ts
   * const sub = new MemoryBus().subscribe("latentwatch.>", (m) => console.log(m.subject));
   * sub.unsubscribe();
   * ```
   */
  subscribe(
    subject: string,
    handler: (msg: BusMessage) => void,
    _onError?: (err: Error) => void,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    this.#checkOpen("subscribe");
    const sub: Sub = {
      tokens: splitSubject(subject, true),
      handler,
      active: true,
      borrows: opts.borrows ?? false,
    };
    this.#subs.push(sub);
    return {
      unsubscribe: () => {
        if (!sub.active) return;
        sub.active = false;
        this.#subs = this.#subs.filter((s) => s !== sub);
      },
      get active() {
        return sub.active;
      },
    };
  }

  /**
   * Create the stream, or add missing subjects to an existing one (like
   * `NatsBus.ensureStream`); the latest duplicate window applies.
   *
   * @example
   * ```ts
   * await new MemoryBus().ensureStream({ name: "ALERTS", subjects: ["latentwatch.alerts.>"], duplicateWindowMs: 120_000 });
   * ```
   */
  ensureStream(spec: StreamSpec): Promise<void> {
    try {
      this.#checkOpen("ensureStream");
      const existing = this.#streams.get(spec.name);
      if (existing) existing.extend(spec);
      else this.#streams.set(spec.name, new MemoryStream(spec, this.#streamMax));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Store in the stream capturing `subject` and deliver to subscribers. A
   * `msgId` seen within the stream's duplicate window is not stored again:
   * the ack says `duplicate: true` with the original sequence number. As on
   * NATS, core subscribers see every publish, duplicates included.
   *
   * @example
   * ```ts
   * const bus = new MemoryBus();
   * await bus.ensureStream({ name: "ALERTS", subjects: ["alerts.>"], duplicateWindowMs: 60_000 });
   * await bus.publishDurable("alerts.x", new Uint8Array(), "id-1"); // { stream: "ALERTS", seq: 1, duplicate: false }
   * ```
   */
  publishDurable(
    subject: string,
    data: Uint8Array,
    msgId: string,
    headers?: Record<string, string>,
  ): Promise<DurableAck> {
    try {
      this.#checkOpen("publishDurable");
      const tokens = splitSubject(subject, false);
      const all = { ...headers, "Nats-Msg-Id": msgId };
      this.#checkSize(subject, data, all);
      const stream = [...this.#streams.values()].find((s) => s.captures(tokens));
      if (!stream) {
        throw new StreamError(
          `publishDurable on '${subject}': expected a stream capturing the subject, found none`,
        );
      }
      const copy = data.slice();
      const ack = stream.store({ subject, headers: all, data: copy, msgId, now: this.#now() });
      this.#enqueue(subject, tokens, copy, all);
      return Promise.resolve(ack);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * The messages a stream holds, oldest first (for the demo's alert view).
   *
   * @example
   * ```ts
   * declare const bus: MemoryBus;
   * bus.streamMessages("ALERTS").map((m) => m.seq);
   * ```
   */
  streamMessages(name: string): readonly StoredMessage[] {
    const stream = this.#streams.get(name);
    if (!stream) {
      throw new StreamError(
        `stream '${name}': expected an existing stream, found none (have: ${
          [...this.#streams.keys()].join(", ") || "none"
        })`,
      );
    }
    return stream.messages();
  }

  /** Everything is delivered synchronously, so there is nothing to wait for. */
  flush(): Promise<void> {
    return this.#closed ? Promise.reject(new BusClosedError("flush")) : Promise.resolve();
  }

  /** Drop every subscription; later calls throw {@linkcode BusClosedError}. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#subs) s.active = false;
    this.#subs = [];
    return Promise.resolve();
  }

  #checkOpen(operation: string): void {
    if (this.#closed) throw new BusClosedError(operation);
  }

  #checkSize(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    const size = data.byteLength + (headers ? headerWireBytes(headers) : 0);
    if (size > this.maxPayload) throw new MaxPayloadError(subject, size, this.maxPayload);
  }

  #enqueue(
    subject: string,
    tokens: string[],
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    reply?: string,
  ): void {
    const subs = this.#subs.filter((s) => subjectMatches(s.tokens, tokens));
    if (subs.length === 0) return;
    this.#queue.push({
      msg: { subject, data, headers: { ...headers }, ...(reply ? { reply } : {}) },
      subs,
    });
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      for (let next = this.#queue.shift(); next; next = this.#queue.shift()) {
        for (const sub of next.subs) {
          if (!sub.active) continue;
          const msg: BusMessage = { ...next.msg, headers: { ...next.msg.headers } };
          // a borrowing handler's bytes are its own copy, scribbled over when it returns,
          // as NATS reuses them: a view kept past the return reads NaNs here too
          if (sub.borrows) msg.data = msg.data.slice();
          try {
            sub.handler(msg);
          } catch (err) {
            this.#onHandlerError(err, msg);
          } finally {
            if (sub.borrows) msg.data.fill(BORROWED_FILL);
          }
        }
      }
    } finally {
      this.#delivering = false;
    }
  }
}
