/**
 * A nats.js transport on Deno's own sockets.
 *
 * nats.js talks to the server through a {@linkcode Transport}; its Node transport runs on
 * Deno's `node:net` compatibility layer, which hands over every read in a fresh 64 KiB
 * buffer and splits most 48 KiB frame messages across two reads, so the client's parser
 * copies each split message once more into a growing buffer. This transport reads
 * `Deno.Conn` straight into large chunks and hands out views of them: one allocation per
 * chunk instead of per read, and a read sees up to a chunk's free space, so messages
 * arrive whole far more often. Writes are queued in order and written fully.
 *
 * TLS is left to nats.js's own Node transport, which this one hands the connection to
 * whenever TLS is asked for or the server requires or offers it (as nats.js decides):
 * certificates, `handshakeFirst` and the rest work exactly as nats.js documents them.
 *
 * @module
 */
import {
  checkOptions,
  type ConnectionOptions,
  deferred,
  errors,
  extractProtocolMessage,
  INFO,
  type Server,
  type ServerInfo,
  type Transport,
} from "@nats-io/transport-node";
import { NodeTransport } from "@nats-io/transport-node/node_transport";
import { type ChunkLoans, ReadChunks, type ReadChunkStats } from "./read_chunks.ts";

/** Reads up to this size (PINGs, acks, small requests) are copied out, so the chunk is reused. */
const COPY_READ_BYTES = 4096;
/** How long a close waits for queued bytes to be written before it closes the socket anyway. */
const FLUSH_ON_CLOSE_MS = 2000;
/** Outbound bytes queued while the server is not reading before the connection is closed. */
export const MAX_QUEUED_WRITE_BYTES = 64 << 20;

/** The server stopped reading: more was queued for it than {@linkcode MAX_QUEUED_WRITE_BYTES}. */
export class NatsWriteBacklogError extends Error {
  override name = "NatsWriteBacklogError";
  /** @param queued bytes waiting to be written when the limit was passed */
  constructor(readonly queued: number, options?: ErrorOptions) {
    super(
      `expected the NATS server to keep reading, found ${queued} bytes queued for it ` +
        `(limit ${MAX_QUEUED_WRITE_BYTES}); closing the connection so the client reconnects`,
      options,
    );
  }
}

/**
 * A {@linkcode Transport} over `Deno.connect`, handing TLS connections to nats.js's Node
 * transport. Install it with {@linkcode useDenoTransport} (done by `connectNats`).
 *
 * @example
 * ```ts
 * import { DenoTransport } from "./deno_transport.ts";
 * const transport = new DenoTransport();
 * console.log(transport.isClosed); // false until connected and closed
 * ```
 */
export class DenoTransport implements Transport {
  readonly lang = "nats.js";
  readonly version = "3.4.0-deno";
  closeError?: Error;
  #conn?: Deno.TcpConn;
  #tls?: Transport;
  #connected = false;
  #done = false;
  #closed = deferred<void | Error>();
  #peeked: Uint8Array | null = null;
  readonly #chunks = new ReadChunks();
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing: Promise<void> | null = null;
  readonly #dial: (hostname: string, port: number) => Promise<Deno.TcpConn>;

  /** @param opts.dial opens the TCP connection (default `Deno.connect`; tests script one) */
  constructor(opts: { dial?: (hostname: string, port: number) => Promise<Deno.TcpConn> } = {}) {
    this.#dial = opts.dial ?? ((hostname, port) => Deno.connect({ hostname, port }));
  }

  get isClosed(): boolean {
    return this.#tls ? this.#tls.isClosed : this.#done;
  }

  /** Dial `server`, read its INFO and check `options` against it. */
  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    if (options.tls) return await this.#handToTls(server, options);
    try {
      this.#conn = await this.#dial(server.hostname, server.port);
      this.#conn.setNoDelay(true);
      if (this.#done) throw new errors.ConnectionError("connection discarded while dialing");
      const info = await this.#peekInfo();
      // as nats.js's Node transport: TLS when required, or offered and not refused (tls: null)
      if (info.tls_required || (info.tls_available && options.tls !== null)) {
        this.#conn.close();
        this.#conn = undefined;
        this.#peeked = null;
        return await this.#handToTls(server, options);
      }
      checkOptions(info, options);
      this.#connected = true;
    } catch (err) {
      this.#closeConn();
      if (err instanceof Deno.errors.ConnectionRefused) {
        throw new errors.ConnectionError("connection refused", { cause: err });
      }
      throw err;
    }
  }

  async #handToTls(server: Server, options: ConnectionOptions): Promise<void> {
    if (this.#done) throw new errors.ConnectionError("connection discarded while dialing");
    const tls = this.#tls = new NodeTransport() as unknown as Transport;
    // the client took closed() before connect: relay the TLS transport's end to it
    tls.closed().then((err) => {
      this.closeError = tls.closeError;
      this.#closed.resolve(err);
    });
    await tls.connect(server, options);
  }

  /** Read until the first protocol line is whole; keep what was read for the parser. */
  async #peekInfo(): Promise<ServerInfo> {
    let seen = new Uint8Array(0);
    while (true) {
      const view = await this.#readView();
      if (view === null) throw new errors.ConnectionError("server closed before sending INFO");
      const joined = new Uint8Array(seen.length + view.length);
      joined.set(seen);
      joined.set(view, seen.length);
      seen = joined;
      const line = extractProtocolMessage(seen);
      if (line === "") continue;
      const m = INFO.exec(line);
      if (!m) throw new errors.ProtocolError(`expected INFO from the server, found ${line}`);
      this.#peeked = seen;
      return JSON.parse(m[1]) as ServerInfo;
    }
  }

  /** Read once into the current chunk and return a view of what arrived (null at EOF). */
  async #readView(): Promise<Uint8Array | null> {
    // a retired chunk lives on while messages still view it, unless they all borrowed theirs
    const room = this.#chunks.space();
    const n = await this.#conn!.read(room);
    if (n === null) return null;
    // small reads are copied: a small message kept for long then holds 4 KiB, not a chunk
    if (n <= COPY_READ_BYTES) return room.slice(0, n);
    return this.#chunks.commit(n);
  }

  /**
   * Reuse read chunks whose messages all went to borrowing handlers, as
   * `loans` counts them (the bus that owns this connection; see
   * `read_chunks.ts`). Without it every chunk is left to the garbage collector.
   */
  lendChunksWhen(loans: ChunkLoans): void {
    this.#chunks.lendWhen(loans);
  }

  /**
   * Read chunks allocated, reused and left to the garbage collector on this
   * connection; null when it went to nats.js's Node transport for TLS.
   */
  get readChunkStats(): ReadChunkStats | null {
    return this.#tls ? null : this.#chunks.stats();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    if (this.#tls) return this.#tls[Symbol.asyncIterator]();
    return this.#iterate();
  }

  async *#iterate(): AsyncIterableIterator<Uint8Array> {
    if (this.#peeked) {
      const first = this.#peeked;
      this.#peeked = null;
      yield first;
    }
    let failure: Error | undefined;
    while (!this.#done) {
      let view: Uint8Array | null;
      try {
        view = await this.#readView();
      } catch (err) {
        if (!this.#done) failure = err instanceof Error ? err : new Error(String(err));
        break;
      }
      if (view === null) break;
      yield view;
    }
    await this.#shutDown(failure, false);
  }

  isEncrypted(): boolean {
    return this.#tls?.isEncrypted() ?? false;
  }

  /** Queue `frame` to be written after everything queued before it. */
  send(frame: Uint8Array): void {
    if (this.#tls) return this.#tls.send(frame);
    if (this.#done || !this.#conn || frame.length === 0) return;
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    // only a backlog behind a write still in progress means the server stopped reading
    if (this.#writing !== null && this.#queuedBytes > MAX_QUEUED_WRITE_BYTES) {
      void this.#shutDown(new NatsWriteBacklogError(this.#queuedBytes), false);
      return;
    }
    // #drain clears #writing in the same turn it finds the queue empty, so a frame queued
    // after that always starts a new drain (a .finally() here would leave a gap of a turn)
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.#conn) {
        const batch = this.#takeQueued();
        let written = 0;
        while (written < batch.length) {
          written += await this.#conn.write(batch.subarray(written));
        }
      }
    } catch (err) {
      // a failed write ends the connection; the client sees it close and reconnects
      if (!this.#done) {
        await this.#shutDown(err instanceof Error ? err : new Error(String(err)), false);
      }
    } finally {
      this.#writing = null;
    }
  }

  /** Everything queued, as one buffer (most often the single frame the client flushed). */
  #takeQueued(): Uint8Array {
    const queue = this.#queue;
    this.#queue = [];
    const bytes = this.#queuedBytes;
    this.#queuedBytes = 0;
    if (queue.length === 1) return queue[0];
    const joined = new Uint8Array(bytes);
    let at = 0;
    for (const part of queue) {
      joined.set(part, at);
      at += part.length;
    }
    return joined;
  }

  close(err?: Error): Promise<void> {
    if (this.#tls) return this.#tls.close(err);
    return this.#shutDown(err, false);
  }

  /** Close after what is queued has been written. */
  disconnect(): void {
    if (this.#tls) return this.#tls.disconnect();
    void this.#shutDown(undefined, true);
  }

  closed(): Promise<void | Error> {
    return this.#closed;
  }

  /** Close at once, without notifying (the client gave up on this connection). */
  discard(): void {
    if (this.#tls) return this.#tls.discard();
    this.#done = true;
    this.#closeConn();
  }

  async #shutDown(err: Error | undefined, flush: boolean): Promise<void> {
    if (!this.#connected) return;
    if (this.#done) {
      this.#closeConn();
      return;
    }
    this.#done = true;
    this.closeError = err;
    if (flush && !err && this.#writing) {
      // a server that stopped reading would hold the flush forever: give it a bounded time
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, FLUSH_ON_CLOSE_MS));
      await Promise.race([this.#writing.catch(() => {}), late]);
      clearTimeout(timer);
    }
    this.#closeConn();
    this.#closed.resolve(err);
  }

  #closeConn(): void {
    try {
      this.#conn?.close();
    } catch {
      // already closed by the other side or by a failed read
    }
    this.#conn = undefined;
  }
}
