/**
 * {@linkcode Bus} over a real NATS server, with JetStream for durable alert
 * publishing. The client is configured for a long-lived sidecar: it waits for
 * the first connection and reconnects forever (the client's default gives up
 * after ten attempts, about 20 s). Its health (status events, the liveness
 * probe) is watched in ./nats_status.ts, its streams set up in
 * ./nats_streams.ts.
 *
 * @module
 */
import {
  createInbox,
  type NatsConnection,
  PermissionViolationError,
  type Subscription,
} from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import {
  type Bus,
  BusHandlerError,
  type BusHealth,
  type BusMessage,
  type BusSubscription,
  type DurableAck,
  type LeaseSpec,
  type StreamSpec,
  type SubscribeOptions,
  SubscriptionClosedError,
} from "./bus.ts";
import { ChunkLending } from "./chunk_lending.ts";
import type { ReadChunkStats } from "./read_chunks.ts";
import type { LeaseStore } from "./leases.ts";
import { openNatsLeases } from "./nats_leases.ts";
import { isNoResponders, publishHeaders, toBusMessage, toNatsHeaders } from "./nats_message.ts";
import { type ExpectedReply, ReplyInbox } from "./reply_inbox.ts";
import { BusClosedError } from "./memory_bus.ts";
import { connectWhenAnswered } from "./nats_first_connect.ts";
import type { NatsTransportKind } from "./nats_connect.ts";
import { NatsStatusWatch } from "./nats_status.ts";
import { NatsStreams } from "./nats_streams.ts";

/** Options for {@linkcode connectNatsBus}. */
export interface NatsBusOptions {
  /** `nats://host:port`, or several separated by commas. */
  url: string;
  /** Connection name shown by the server (`nats-server` monitoring, logs). */
  name?: string;
  /** User and password (the NATS client ignores `user:pass@` in a URL, so it is parsed here). */
  user?: string;
  pass?: string;
  /** Milliseconds between reconnect attempts (default 500). */
  reconnectWaitMs?: number;
  /** Publish-ack timeout for durable publishes in milliseconds (default 5000). */
  ackTimeoutMs?: number;
  /** Called on connection status changes (disconnect, reconnect, errors, failed probes). */
  onStatus?: (event: { type: string; detail: string }) => void;
  /**
   * Liveness probe: every `intervalMs` a PING goes out, and the connection
   * counts as not delivering (see {@linkcode BusHealth}) when its PONG, read
   * by the same loop as the messages, is not back within `timeoutMs`
   * (defaults 2000 and 3000; `intervalMs: 0` turns the probe off).
   */
  probe?: { intervalMs?: number; timeoutMs?: number };
  /** Milliseconds before a subscription closed by the server is opened again (default 500). */
  resubscribeMs?: number;
  /**
   * Stops the wait for the first connection: the connect rejects with
   * `NatsConnectAbortedError` (./nats_first_connect.ts) and leaves nothing open.
   */
  signal?: AbortSignal;
  /**
   * The socket layer under the NATS client: `deno` (Deno's own sockets, the default) or
   * `node` (nats.js's Node transport); `LATENTWATCH_NATS_TRANSPORT` sets it when absent.
   */
  transport?: NatsTransportKind;
}

/**
 * Connect to NATS and return a {@linkcode Bus}. Waits for the first
 * connection, however long that takes (until `signal` aborts), and
 * reconnects forever afterwards.
 *
 * @example
 * ```ts
 * const bus = await connectNatsBus({ url: "nats://127.0.0.1:4222" });
 * bus.publish("demo", new TextEncoder().encode("hi"));
 * await bus.close();
 * ```
 */
export async function connectNatsBus(opts: NatsBusOptions): Promise<NatsBus> {
  // credentials in a URL (`nats://user:pass@host:4222`) become options
  let user = opts.user;
  let pass = opts.pass;
  const servers = opts.url.split(",").map((s) => {
    const m = /^([a-z]+:\/\/)([^:@/]+)(?::([^@/]*))?@(.+)$/.exec(s.trim());
    if (!m) return s.trim();
    user ??= decodeURIComponent(m[2]);
    if (m[3] !== undefined) pass ??= decodeURIComponent(m[3]);
    return `${m[1]}${m[4]}`;
  });
  const nc = await connectWhenAnswered({
    servers,
    ...(user !== undefined ? { user } : {}),
    ...(pass !== undefined ? { pass } : {}),
    name: opts.name ?? "latentwatch",
    maxReconnectAttempts: -1,
    reconnectTimeWait: opts.reconnectWaitMs ?? 500,
    reconnectJitter: 100,
    pingInterval: 10_000,
    // A request's errors carry our own context (subject, timeout); the client's stack capture
    // per request cost ~30 µs of every gated step.
    noAsyncTraces: true,
  }, {
    retryMs: opts.reconnectWaitMs ?? 500,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.transport ? { transport: opts.transport } : {}),
  });
  return new NatsBus(nc, opts);
}

/** A {@linkcode Bus} backed by a NATS connection. */
export class NatsBus implements Bus {
  readonly #nc: NatsConnection;
  /** Set by close(): subscriptions ending now are not faults. */
  #closing = false;
  readonly #js: JetStreamClient;
  readonly #ackTimeoutMs: number;
  readonly #opts: NatsBusOptions;
  /** Connected, delivering (the liveness probe), the last error seen. */
  readonly #status: NatsStatusWatch;
  readonly #streams: NatsStreams;
  readonly #lending: ChunkLending;
  #replyInbox: ReplyInbox<BusMessage> | null = null;

  constructor(nc: NatsConnection, opts: NatsBusOptions) {
    this.#nc = nc;
    this.#lending = new ChunkLending(nc);
    this.#opts = opts;
    this.#js = jetstream(nc);
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
    this.#status = new NatsStatusWatch(nc, {
      onStatus: opts.onStatus,
      probe: opts.probe,
      closing: () => this.#closing,
      onServerError: (err) => this.#refusedPublish(err),
    });
    this.#streams = new NatsStreams(nc);
  }

  /** Connected, answering the liveness probe, and the last error seen. */
  get health(): BusHealth {
    return this.#status.health;
  }

  /**
   * The connection's read chunks: allocated, reused (their messages all went
   * to borrowing subscriptions) and left to the garbage collector; null on the
   * Node transport.
   */
  get readChunks(): ReadChunkStats | null {
    return this.#lending.stats;
  }

  get maxPayload(): number {
    return this.#nc.info?.max_payload ?? 1024 * 1024;
  }

  get connected(): boolean {
    return this.#status.connected;
  }

  /** Server address of the current connection, for logs. */
  get server(): string {
    return this.#nc.getServer();
  }

  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    const h = publishHeaders(headers);
    this.#nc.publish(subject, data, h ? { headers: h } : undefined);
  }

  request(
    subject: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ): Promise<BusMessage> {
    if (this.#closing || this.#nc.isClosed()) {
      return Promise.reject(new BusClosedError(`request on '${subject}'`));
    }
    let expected: ExpectedReply<BusMessage>;
    try {
      expected = (this.#replyInbox ?? this.#openReplyInbox()).expect(subject, timeoutMs);
    } catch (err) {
      return Promise.reject(err); // the client refused the reply subscription
    }
    try {
      const h = publishHeaders(headers);
      this.#nc.publish(subject, data, { reply: expected.reply, ...(h ? { headers: h } : {}) });
    } catch (err) {
      expected.cancel(err instanceof Error ? err : new Error(String(err)));
    }
    return expected.answer;
  }

  /**
   * The one subscription every request's answer comes back on (`_INBOX.<id>.*`,
   * as the client's own requests use, so the same permissions apply).
   */
  #openReplyInbox(): ReplyInbox<BusMessage> {
    const inbox = new ReplyInbox<BusMessage>(`${createInbox()}.`);
    const sub = this.#nc.subscribe(inbox.filter, {
      callback: (err, msg) => {
        if (err) return this.#status.noteError(err.message);
        if (isNoResponders(msg)) inbox.refuse(msg.subject);
        else inbox.answer(msg.subject, toBusMessage(msg));
      },
    });
    this.#replyInbox = inbox;
    sub.closed.then((err) => {
      // closed by the server (a permission error) or with the connection: the next request opens
      // a new one, and the requests waiting here fail now rather than at their timeouts
      if (this.#replyInbox === inbox) this.#replyInbox = null;
      inbox.failAll(
        err instanceof Error ? err : new BusClosedError("request (the reply subscription)"),
      );
    });
    return inbox;
  }

  /**
   * Subscribe. Nothing a message carries can stop the subscription: header
   * blocks are read by {@linkcode parseHeaderBlock} (problems come back on
   * the message), and a throwing `handler` is reported to `onError` as a
   * {@linkcode BusHandlerError} instead of reaching the client's read loop.
   * A subscription the server closes (a permission error) is reported as a
   * {@linkcode SubscriptionClosedError} and opened again; `active` reads
   * false meanwhile.
   *
   * @example
   * ```ts
   * const bus = await connectNatsBus({ url: "nats://127.0.0.1:4222" });
   * const sub = bus.subscribe(
   *   "latentwatch.tap.v1.>",
   *   (msg) => console.log(msg.subject, msg.headers["Lw-Request-Id"], msg.data.length),
   *   (err) => console.error("subscription:", err.message), // a throwing handler lands here
   * );
   * // ... later
   * sub.unsubscribe();
   * await bus.close();
   * ```
   */
  subscribe(
    subject: string,
    handler: (msg: BusMessage) => void,
    onError?: (err: Error) => void,
    opts: SubscribeOptions = {},
  ): BusSubscription {
    const lending = opts.borrows ? this.#lending : null;
    const report = (err: Error) => {
      this.#status.noteError(err.message);
      try {
        onError?.(err);
      } catch {
        // a failing error handler must not reach the client either
      }
    };
    const state = { stopped: false, open: false, sub: null as Subscription | null };
    const open = () => {
      if (state.stopped || this.#closing || this.#nc.isClosed()) return;
      let sub: Subscription;
      try {
        sub = this.#nc.subscribe(subject, {
          callback: (err, msg) => {
            try {
              if (err) return report(err);
              lending?.borrowedOne();
              handler(toBusMessage(msg));
            } catch (thrown) {
              report(new BusHandlerError(subject, { cause: thrown }));
            }
          },
        });
      } catch (err) {
        report(new SubscriptionClosedError(subject, { cause: err }));
        setTimeout(open, this.#opts.resubscribeMs ?? 500);
        return;
      }
      state.sub = sub;
      state.open = true;
      sub.closed.then((err) => {
        if (state.sub !== sub) return;
        state.open = false;
        // draining on close ends every subscription: not a fault to report
        if (state.stopped || this.#closing || this.#nc.isClosed()) return;
        report(new SubscriptionClosedError(subject, err ? { cause: err } : undefined));
        setTimeout(open, this.#opts.resubscribeMs ?? 500);
      });
    };
    open();
    const connected = () => this.connected;
    return {
      unsubscribe: () => {
        state.stopped = true;
        state.open = false;
        try {
          state.sub?.unsubscribe();
        } catch {
          // closed connection: nothing left to unsubscribe
        }
      },
      get active() {
        return state.open && !state.stopped && connected();
      },
    };
  }

  /**
   * Create the stream, or add the subjects it lacks; calls for one stream name
   * are serialised in this client ({@linkcode NatsStreams.ensure}).
   */
  ensureStream(spec: StreamSpec): Promise<void> {
    return this.#streams.ensure(spec);
  }

  /** A JetStream KV bucket as a {@linkcode LeaseStore} (created when missing). */
  openLeases(spec: LeaseSpec): Promise<LeaseStore> {
    return openNatsLeases(this.#nc, spec);
  }

  async publishDurable(
    subject: string,
    data: Uint8Array,
    msgId: string,
    headers?: Record<string, string>,
  ): Promise<DurableAck> {
    const ack = await this.#js.publish(subject, data, {
      msgID: msgId,
      timeout: this.#ackTimeoutMs,
      headers: headers ? toNatsHeaders(headers) : undefined,
    });
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  }

  async flush(): Promise<void> {
    await this.#nc.flush();
  }

  async close(): Promise<void> {
    this.#status.stop();
    this.#closing = true;
    if (!this.#nc.isClosed()) await this.#nc.drain().catch(() => this.#nc.close());
    // draining closes the reply subscription, which fails what still waits; should the client
    // close without that, the requests still waiting fail here and the inbox's timer stops
    this.#replyInbox?.failAll(new BusClosedError("request (the bus was closed)"));
  }

  /**
   * The server refused a publish (a permissions violation names its subject): the requests
   * waiting on that subject fail now, as `permission_denied`, not at their timeouts.
   */
  #refusedPublish(err: unknown): void {
    if (!(err instanceof PermissionViolationError) || err.operation !== "publish") return;
    this.#replyInbox?.failSubject(err.subject, err);
  }
}
