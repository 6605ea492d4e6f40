/**
 * {@linkcode Bus} over a real NATS server, with JetStream for durable alert
 * publishing. The client is configured for a long-lived sidecar: it waits for
 * the first connection and reconnects forever (the client's default gives up
 * after ten attempts, about 20 s).
 *
 * @module
 */
import {
  connect,
  headers as natsHeaders,
  type MsgHdrs,
  type NatsConnection,
} from "@nats-io/transport-node";
import { jetstream, type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";
import {
  type Bus,
  type BusMessage,
  BusRequestError,
  type BusSubscription,
  type DurableAck,
  type StreamSpec,
} from "./bus.ts";

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
  /** Called on connection status changes (disconnect, reconnect, errors). */
  onStatus?: (event: { type: string; detail: string }) => void;
}

/**
 * Connect to NATS and return a {@linkcode Bus}. Waits for the first
 * connection, however long that takes, and reconnects forever afterwards.
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
  const nc = await connect({
    servers,
    ...(user !== undefined ? { user } : {}),
    ...(pass !== undefined ? { pass } : {}),
    name: opts.name ?? "latentwatch",
    maxReconnectAttempts: -1,
    waitOnFirstConnect: true,
    reconnectTimeWait: opts.reconnectWaitMs ?? 500,
    reconnectJitter: 100,
    pingInterval: 10_000,
  });
  return new NatsBus(nc, opts);
}

/** A {@linkcode Bus} backed by a NATS connection. */
export class NatsBus implements Bus {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #ackTimeoutMs: number;
  #connected = true;

  constructor(nc: NatsConnection, opts: NatsBusOptions) {
    this.#nc = nc;
    this.#js = jetstream(nc);
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 5000;
    this.#watchStatus(opts.onStatus);
  }

  get maxPayload(): number {
    return this.#nc.info?.max_payload ?? 1024 * 1024;
  }

  get connected(): boolean {
    return this.#connected && !this.#nc.isClosed();
  }

  /** Server address of the current connection, for logs. */
  get server(): string {
    return this.#nc.getServer();
  }

  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    this.#nc.publish(subject, data, headers ? { headers: toNatsHeaders(headers) } : undefined);
  }

  async request(
    subject: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ): Promise<BusMessage> {
    try {
      const msg = await this.#nc.request(subject, data, {
        timeout: timeoutMs,
        ...(headers ? { headers: toNatsHeaders(headers) } : {}),
      });
      return { subject: msg.subject, headers: fromNatsHeaders(msg.headers), data: msg.data };
    } catch (err) {
      const text = `${(err as Error).name} ${(err as Error).message}`.toLowerCase();
      if (text.includes("no responders") || text.includes("503")) {
        throw new BusRequestError("no_responders", subject, timeoutMs, { cause: err });
      }
      if (text.includes("timeout")) {
        throw new BusRequestError("timeout", subject, timeoutMs, { cause: err });
      }
      throw err;
    }
  }

  subscribe(
    subject: string,
    handler: (msg: BusMessage) => void,
    onError?: (err: Error) => void,
  ): BusSubscription {
    const sub = this.#nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return onError?.(err);
        handler({
          subject: msg.subject,
          headers: fromNatsHeaders(msg.headers),
          data: msg.data,
          ...(msg.reply ? { reply: msg.reply } : {}),
        });
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  async ensureStream(spec: StreamSpec): Promise<void> {
    const jsm = await jetstreamManager(this.#nc);
    const duplicateWindowNs = spec.duplicateWindowMs * 1_000_000;
    try {
      const info = await jsm.streams.info(spec.name);
      const missing = spec.subjects.filter((s) => !info.config.subjects?.includes(s));
      if (missing.length > 0) {
        await jsm.streams.update(spec.name, {
          ...info.config,
          subjects: [...(info.config.subjects ?? []), ...missing],
        });
      }
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      await jsm.streams.add({
        name: spec.name,
        subjects: spec.subjects,
        duplicate_window: duplicateWindowNs,
      });
    }
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
    if (this.#nc.isClosed()) return;
    await this.#nc.drain().catch(() => this.#nc.close());
  }

  async #watchStatus(onStatus?: NatsBusOptions["onStatus"]): Promise<void> {
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect") this.#connected = false;
      if (s.type === "reconnect") this.#connected = true;
      if (s.type === "ping" || s.type === "reconnecting") continue;
      const detail = "server" in s ? String(s.server) : "error" in s ? String(s.error) : "";
      onStatus?.({ type: s.type, detail });
    }
  }
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: number; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || /stream not found/i.test(String(e?.message));
}

function toNatsHeaders(headers: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  return h;
}

function fromNatsHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  // a header sent twice keeps both values, comma-joined, so the strict frame
  // decoder sees a malformed value instead of silently reading the first
  for (const k of h.keys()) out[k] = h.values(k).join(",");
  return out;
}
