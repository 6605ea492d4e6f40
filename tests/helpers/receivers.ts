/**
 * Loopback receivers for the sink tests: an HTTP server whose answers a test
 * scripts, a TCP or TLS listener that parses RFC 6587 octet-counted frames,
 * a listener that accepts and never reads, and a throwaway CA and server
 * certificate made with `openssl`.
 *
 * @module
 */

/** One request the HTTP receiver saw. */
export interface Received {
  headers: Headers;
  body: string;
  at: number;
}

/** A scripted HTTP receiver on 127.0.0.1. */
export interface HttpReceiver {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

/**
 * Serve on 127.0.0.1:0; `answer(n, req)` (n counts requests from 0) decides
 * each answer: a status, or "hang" to never answer (until the client aborts).
 *
 * @example
 * ```ts
 * const rx = startHttpReceiver((n) => n < 2 ? 503 : 200);
 * ```
 */
export function startHttpReceiver(
  answer: (n: number, r: Received) => number | "hang",
): HttpReceiver {
  const received: Received[] = [];
  const hanging = new Set<() => void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const r = { headers: req.headers, body: await req.text(), at: performance.now() };
    received.push(r);
    const a = answer(received.length - 1, r);
    if (a === "hang") {
      // answer only when the client gives up or the receiver closes, so shutdown ends
      await new Promise<void>((resolve) => {
        hanging.add(resolve);
        req.signal.addEventListener("abort", () => resolve());
        // bounded even if the abort never reaches the server: a test must stop by itself
        setTimeout(resolve, 3000);
      });
      return new Response(null, { status: 499 });
    }
    return new Response(a < 300 ? '{"text":"Success","code":0}' : `status ${a}`, { status: a });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    received,
    close: () => {
      for (const wake of hanging) wake();
      return server.shutdown();
    },
  };
}

/** A TCP (or TLS) listener collecting octet-counted syslog frames. */
export interface FrameReceiver {
  port: number;
  /** Messages decoded so far (the frame bodies, UTF-8). */
  messages: string[];
  /** Connections accepted so far. */
  connections: number;
  /** Close every accepted connection, keep listening (a collector restarting). */
  dropConnections(): void;
  close(): Promise<void>;
}

/**
 * Parse RFC 6587 octet-counted frames (`MSG-LEN SP MSG`) from `bytes`,
 * returning the messages and the unconsumed rest. Throws on a bad length.
 *
 * @example
 * ```ts
 * parseFrames(new TextEncoder().encode("3 abc2 x")); // { messages: ["abc"], rest: "2 x" bytes }
 * ```
 */
export function parseFrames(bytes: Uint8Array): { messages: string[]; rest: Uint8Array } {
  const messages: string[] = [];
  let off = 0;
  for (;;) {
    const sp = bytes.indexOf(0x20, off);
    if (sp < 0) break;
    const lenText = new TextDecoder().decode(bytes.subarray(off, sp));
    if (!/^[1-9][0-9]*$/.test(lenText)) {
      throw new Error(`expected an octet count, found ${JSON.stringify(lenText.slice(0, 20))}`);
    }
    const len = Number(lenText);
    if (bytes.length < sp + 1 + len) break;
    messages.push(new TextDecoder().decode(bytes.subarray(sp + 1, sp + 1 + len)));
    off = sp + 1 + len;
  }
  return { messages, rest: bytes.slice(off) };
}

/**
 * Listen on 127.0.0.1:0 (TLS when `tls` is given) and decode frames.
 *
 * @example
 * ```ts
 * const rx = startFrameReceiver({ cert, key });
 * ```
 */
export function startFrameReceiver(tls?: { cert: string; key: string }): FrameReceiver {
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const rx: FrameReceiver = {
    port: (listener.addr as Deno.NetAddr).port,
    messages: [],
    connections: 0,
    dropConnections: () => {
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled(tasks);
    },
  };
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    let pending: Uint8Array = new Uint8Array(0);
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        const joined = new Uint8Array(pending.length + n);
        joined.set(pending);
        joined.set(buf.subarray(0, n), pending.length);
        const { messages, rest } = parseFrames(joined);
        rx.messages.push(...messages);
        pending = rest;
      }
    } catch {
      // closed by close(), or the peer went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  tasks.push((async () => {
    try {
      for await (const conn of listener) {
        rx.connections++;
        tasks.push(serve(conn));
      }
    } catch {
      // listener closed
    }
  })());
  return rx;
}

/**
 * A TCP listener that accepts connections and never reads from them: writes
 * to it stall once the socket buffers fill (a dead collector).
 *
 * @example
 * ```ts
 * const black = startBlackHole();
 * ```
 */
export function startBlackHole(): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) conns.push(c);
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: async () => {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting;
    },
  };
}

/** A CA and a server certificate for 127.0.0.1 / localhost, PEM files in `dir`. */
export interface TestPki {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

/**
 * Make a throwaway CA and a server certificate signed by it with `openssl`
 * (subjectAltName localhost and 127.0.0.1).
 *
 * @example
 * ```ts
 * const pki = await makeTestPki();
 * await Deno.remove(pki.dir, { recursive: true });
 * ```
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "lw-pki-" });
  const run = async (args: string[]) => {
    const r = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
      .output();
    if (r.code !== 0) {
      throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(r.stderr)}`);
    }
  };
  await run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=latentwatch test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  ]);
  await run([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  ]);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  await run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return { dir, ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key` };
}
