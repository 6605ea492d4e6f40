/**
 * A minimal NATS publisher speaking the wire protocol over a plain TCP
 * socket, so tests can send header blocks no client library would build
 * (names with spaces or non-ASCII bytes, invalid UTF-8, repeated names).
 * `HPUB <subject> <hdr_len> <total_len>\r\n<headers><payload>\r\n`.
 */

const enc = new TextEncoder();

/** One message as raw bytes: a header block (or none) and a payload. */
export interface RawMessage {
  subject: string;
  /** The header block exactly as it goes on the wire (`NATS/1.0\r\n...\r\n\r\n`); none for PUB. */
  headerBlock?: Uint8Array;
  payload: Uint8Array;
}

/** Build a header block from lines of raw bytes (each `Name: value` without CRLF). */
export function headerBlock(lines: readonly Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [enc.encode("NATS/1.0\r\n")];
  for (const l of lines) parts.push(l, enc.encode("\r\n"));
  parts.push(enc.encode("\r\n"));
  return concat(parts);
}

/** `Name: value` as UTF-8 bytes. */
export function line(name: string, value: string): Uint8Array {
  return enc.encode(`${name}: ${value}`);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Encode one message as a PUB or HPUB command. */
export function wireCommand(m: RawMessage): Uint8Array {
  if (!m.headerBlock) {
    return concat([enc.encode(`PUB ${m.subject} ${m.payload.length}\r\n`), m.payload, CRLF]);
  }
  const h = m.headerBlock.length;
  return concat([
    enc.encode(`HPUB ${m.subject} ${h} ${h + m.payload.length}\r\n`),
    m.headerBlock,
    m.payload,
    CRLF,
  ]);
}

const CRLF = enc.encode("\r\n");

/** A raw-protocol publisher on one TCP connection. */
export class RawNatsPublisher {
  readonly #conn: Deno.TcpConn;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #buf = "";
  readonly #dec = new TextDecoder();

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connect to `nats://127.0.0.1:<port>` and say CONNECT with headers on. */
  static async connect(url: string): Promise<RawNatsPublisher> {
    const { hostname, port } = new URL(url.replace(/^nats:/, "http:"));
    const conn = await Deno.connect({ hostname, port: Number(port) });
    const p = new RawNatsPublisher(conn);
    await p.#readUntil("INFO ");
    await p.#write(
      enc.encode(
        `CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"name":"raw-fuzz","lang":"raw","version":"0"}\r\n`,
      ),
    );
    await p.flush();
    return p;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let o = 0;
    while (o < bytes.length) o += await this.#conn.write(bytes.subarray(o));
  }

  async #readUntil(token: string): Promise<string> {
    const chunk = new Uint8Array(64 * 1024);
    for (;;) {
      const i = this.#buf.indexOf(token);
      if (i >= 0) {
        const end = this.#buf.indexOf("\r\n", i);
        if (end >= 0) {
          const got = this.#buf.slice(0, end);
          this.#buf = this.#buf.slice(end + 2);
          return got;
        }
      }
      if (this.#buf.includes("-ERR")) throw new Error(`nats-server said: ${this.#buf.trim()}`);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error(`connection closed waiting for ${token}; got ${this.#buf}`);
      this.#buf += this.#dec.decode(chunk.subarray(0, n));
    }
  }

  /** Queue a message; sent in batches of ~64 KiB. */
  async publish(m: RawMessage): Promise<void> {
    const cmd = wireCommand(m);
    this.#pending.push(cmd);
    this.#pendingBytes += cmd.length;
    if (this.#pendingBytes >= 64 * 1024) await this.#send();
  }

  async #send(): Promise<void> {
    if (this.#pending.length === 0) return;
    const bytes = concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.#write(bytes);
  }

  /** Send what is queued and wait for the server's PONG (it has processed everything before). */
  async flush(): Promise<void> {
    await this.#send();
    await this.#write(enc.encode("PING\r\n"));
    await this.#readUntil("PONG");
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}
