/**
 * The syslog sink: RFC 5424 messages (MSG as native JSON, CEF, OCSF or ECS)
 * over TCP with RFC 6587 octet-counting framing, or over TLS (RFC 5425,
 * which mandates that framing). One connection, frames written in order, a
 * batch of frames per write.
 *
 * The connection is opened at `start` (a collector that is down then is
 * logged, not fatal) and again, with capped exponential backoff, whenever a
 * write fails, times out or the collector closes it: the batch being written
 * is sent again on the new connection. Syslog over TCP has no
 * acknowledgement: "delivered" means handed to the kernel, and frames still
 * in the socket buffer when a connection breaks are lost (or, when the
 * break is seen during the write, sent twice). The queue is bounded: while
 * the collector is unreachable alerts beyond `maxQueue` are dropped
 * (`queue_full`), counted.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import { octetFrame } from "../../core/render/syslog.ts";
import { syslogMessage, type SyslogMsgFormat } from "../renderings.ts";
import { concat, type Prepared, QueuedSink, raceSignal, type SinkDeps, writeAll } from "../base.ts";

export type { SyslogMsgFormat } from "../renderings.ts";

/** TLS settings of a {@linkcode SyslogSink} (RFC 5425). */
export interface SyslogTlsOptions {
  /** PEM file of the CA(s) that signed the collector's certificate (absolute); system roots otherwise. */
  caFile?: string;
  /** Name the certificate must carry (default: the address's host). */
  serverName?: string;
  /** Client certificate and key PEM files, for collectors that require mutual TLS. */
  certFile?: string;
  keyFile?: string;
}

/** Settings of a {@linkcode SyslogSink}. */
export interface SyslogSinkOptions {
  /** Default `syslog:<host>:<port>`. */
  name?: string;
  host: string;
  port: number;
  tls?: SyslogTlsOptions;
  /** Default `json`. */
  format?: SyslogMsgFormat;
  /** APP-NAME (default `latentwatch`). */
  appName?: string;
  /** HOSTNAME (default: the deps' hostname, else `Deno.hostname()`). */
  hostname?: string;
  /** Facility 0-23 (default 16, local0). */
  facility?: number;
  /** Messages larger than this (bytes, before framing) are dropped as `too_large` (default 65536). */
  maxMessageBytes?: number;
  maxQueue: number;
  /** Limit of one attempt: connect (when needed) and write a batch. */
  timeoutMs: number;
  /** Reconnect delay cap in ms (default 5000); retries never stop while the sink runs. */
  maxBackoffMs?: number;
  /** First reconnect delay in ms (default 100). */
  initialBackoffMs?: number;
}

/** A TLS file of the syslog config could not be read. */
export class SyslogTlsFileError extends Error {
  constructor(what: string, path: string, cause: unknown) {
    super(
      `expected a readable PEM ${what} file at ${path}, found ${(cause as Error).message}`,
      { cause },
    );
    this.name = "SyslogTlsFileError";
  }
}

/** Frames written per write call at most. */
const MAX_BATCH = 128;

/**
 * RFC 5424 over TCP or TLS with octet counting.
 *
 * @example
 * ```ts
 * import type { Alert } from "../../core/alert.ts";
 * declare const alert: Alert;
 * import { Logger } from "../../shared/log.ts";
 * const sink = new SyslogSink(
 *   { host: "siem.internal", port: 6514, tls: { caFile: "/etc/lw/ca.pem" }, format: "cef", maxQueue: 10000, timeoutMs: 5000 },
 *   { log: new Logger() },
 * );
 * await sink.start();
 * sink.submit(alert);
 * ```
 */
export class SyslogSink extends QueuedSink {
  readonly #o: SyslogSinkOptions;
  readonly #hostname: string;
  #conn: Deno.Conn | null = null;
  #connecting: Promise<Deno.Conn> | null = null;
  #tls: { caCerts?: string[]; cert?: string; key?: string } | null = null;
  #closed = false;

  constructor(opts: SyslogSinkOptions, deps: SinkDeps) {
    super({
      name: opts.name ?? `syslog:${opts.host}:${opts.port}`,
      maxQueue: opts.maxQueue,
      timeoutMs: opts.timeoutMs,
      maxAttempts: Infinity,
      initialBackoffMs: opts.initialBackoffMs ?? 100,
      maxBackoffMs: opts.maxBackoffMs ?? 5000,
      maxBatch: MAX_BATCH,
      maxMessageBytes: opts.maxMessageBytes ?? 65536,
    }, deps);
    this.#o = opts;
    this.#hostname = opts.hostname ?? deps.hostname ?? Deno.hostname();
  }

  /**
   * Read the TLS files (a missing one throws {@linkcode SyslogTlsFileError})
   * and try to connect once; a collector that is down is logged and retried
   * as alerts arrive.
   */
  override async start(): Promise<void> {
    await this.#loadTls();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error("connect timed out")), this.#o.timeoutMs);
    try {
      await this.#connection(ctl.signal);
    } catch (err) {
      this.log.warn("alert.syslog_unreachable", {
        sink: this.name,
        address: `${this.#o.host}:${this.#o.port}`,
        error: (err as Error).message,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  protected prepare(alert: Alert): Prepared {
    // the one syslog rendering (src/sinks/renderings.ts), as the rendered
    // JetStream publication `shape: syslog` sends it
    const msg = new TextEncoder().encode(syslogMessage(alert, {
      hostname: this.#hostname,
      format: this.#o.format ?? "json",
      ...(this.#o.appName !== undefined ? { appName: this.#o.appName } : {}),
      ...(this.#o.facility !== undefined ? { facility: this.#o.facility } : {}),
    }));
    return { alert, payload: octetFrame(msg), bytes: msg.length };
  }

  protected async deliver(batch: Prepared[], signal: AbortSignal): Promise<void> {
    const conn = await this.#connection(signal);
    const onAbort = () => this.#drop(conn, "write timed out");
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await writeAll(conn, concat(batch));
    } catch (err) {
      this.#drop(conn, (err as Error).message);
      throw err;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  override async close(): Promise<void> {
    this.#closed = true;
    await super.close();
    if (this.#conn) this.#drop(this.#conn, "sink closed");
  }

  /** Close `conn` and forget it, so the next attempt reconnects. */
  #drop(conn: Deno.Conn, why: string): void {
    if (this.#conn === conn) this.#conn = null;
    try {
      conn.close();
    } catch {
      // already closed (by the reader seeing EOF, or a failed write)
    }
    if (!this.#closed) this.log.warn("alert.syslog_disconnected", { sink: this.name, why });
  }

  #connection(signal: AbortSignal): Promise<Deno.Conn> {
    if (this.#conn) return Promise.resolve(this.#conn);
    this.#connecting ??= this.#connect().finally(() => this.#connecting = null);
    // a connection that arrives after the attempt gave up is kept for the next one
    return raceSignal(this.#connecting, signal);
  }

  async #connect(): Promise<Deno.Conn> {
    const { host, port } = this.#o;
    let conn: Deno.Conn;
    if (this.#o.tls) {
      const tls = this.#tls ?? await this.#loadTls();
      conn = await Deno.connectTls({
        hostname: host,
        port,
        ...(this.#o.tls.serverName ? { serverName: this.#o.tls.serverName } : {}),
        ...(tls?.caCerts ? { caCerts: tls.caCerts } : {}),
        ...(tls?.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
      } as Deno.ConnectTlsOptions);
      await (conn as Deno.TlsConn).handshake();
    } else {
      conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
    }
    if (this.#closed) {
      conn.close();
      throw new Error("sink closed");
    }
    this.#conn = conn;
    this.#watch(conn);
    this.log.info("alert.syslog_connected", { sink: this.name, address: `${host}:${port}` });
    return conn;
  }

  /**
   * A collector never writes to us; a read that ends means it closed the
   * connection (or reset it). Noticing that now, rather than at the next
   * write, keeps the next batch off a dead socket.
   */
  async #watch(conn: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(512);
    try {
      while ((await conn.read(buf)) !== null) { /* collectors send nothing we need */ }
    } catch {
      // reset or closed by us: either way the connection is finished
    }
    if (this.#conn === conn) this.#drop(conn, "collector closed the connection");
  }

  async #loadTls(): Promise<{ caCerts?: string[]; cert?: string; key?: string } | null> {
    const t = this.#o.tls;
    if (!t) return null;
    const read = async (what: string, path: string) => {
      try {
        return await Deno.readTextFile(path);
      } catch (err) {
        throw new SyslogTlsFileError(what, path, err);
      }
    };
    this.#tls = {
      ...(t.caFile ? { caCerts: [await read("CA", t.caFile)] } : {}),
      ...(t.certFile ? { cert: await read("certificate", t.certFile) } : {}),
      ...(t.keyFile ? { key: await read("key", t.keyFile) } : {}),
    };
    return this.#tls;
  }
}
