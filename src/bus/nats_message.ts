/**
 * Between the NATS client's messages and the bus's: headers out as the
 * client's `MsgHdrs`, messages in as {@linkcode BusMessage}s read from the
 * raw header block (the client's own parser throws on what anyone on the
 * bus can send), and a request's "no responders" status.
 *
 * @module
 */
import { headers as natsHeaders, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import type { BusMessage } from "./bus.ts";
import { encodedBlockOf } from "./header_template.ts";
import {
  encodeHeaderBlock,
  headerStatus,
  type ParsedHeaders,
  parseHeaderBlock,
  put,
} from "./nats_headers.ts";

/**
 * `headers` as the client's header object.
 *
 * @example
 * ```ts
 * const h = toNatsHeaders({ "Lw-Seq": "1" });
 * h.get("Lw-Seq"); // "1"
 * ```
 */
export function toNatsHeaders(headers: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  return h;
}

/**
 * A header block encoded once, handed to the client's core `publish`, which
 * reads a message's headers only through `encode()` (`protocol.publish`,
 * nats-core 3.x; the bus contract checks the bytes that arrive). JetStream's
 * publish adds its own headers, so it gets {@linkcode toNatsHeaders}.
 */
class EncodedHeaders {
  constructor(readonly block: Uint8Array) {}
  encode(): Uint8Array {
    return this.block;
  }
}

/**
 * `headers` for a core publish: the block a `HeaderTemplate`
 * wrote for them, else encoded in one pass by {@linkcode encodeHeaderBlock}
 * (a bad name or value throws its `HeaderEncodeError`), or `undefined` when
 * there are none (or no record).
 *
 * @example
 * ```ts
 * const h = publishHeaders({ "Lw-Seq": "1" }); // nc.publish(subject, data, { headers: h })
 * publishHeaders({}); // undefined: a plain PUB
 * ```
 */
export function publishHeaders(headers?: Record<string, string>): MsgHdrs | undefined {
  if (headers === undefined) return undefined;
  const written = encodedBlockOf(headers); // a template's record: its block was written ahead
  if (written !== undefined) return new EncodedHeaders(written) as unknown as MsgHdrs;
  for (const name in headers) {
    if (Object.hasOwn(headers, name)) {
      return new EncodedHeaders(encodeHeaderBlock(headers)) as unknown as MsgHdrs;
    }
  }
  return undefined;
}

/** The parts of the client's message object that hold the raw bytes (nats-core 3.x `MsgImpl`). */
interface RawMsg {
  _rdata?: Uint8Array;
  _msg?: { hdr?: number };
}

/**
 * The raw header block of `msg`: `null` when it has none, `undefined` when
 * the client's message object does not expose it (another client version).
 *
 * @example
 * ```ts
 * import type { Msg } from "@nats-io/transport-node";
 * declare const msg: Msg;
 * const block = rawHeaderBlock(msg); // Uint8Array "NATS/1.0\r\n..." or null
 * ```
 */
export function rawHeaderBlock(msg: Msg): Uint8Array | null | undefined {
  const raw = msg as unknown as RawMsg;
  const hdr = raw._msg?.hdr;
  if (typeof hdr !== "number") return undefined;
  if (hdr < 0) return null;
  if (!(raw._rdata instanceof Uint8Array)) return undefined;
  return raw._rdata.subarray(0, hdr);
}

/** Headers of `msg`, read defensively; never throws. */
export function readHeaders(msg: Msg): ParsedHeaders {
  const block = rawHeaderBlock(msg);
  if (block === null) return { headers: {}, repeated: [] };
  if (block !== undefined) return parseHeaderBlock(block);
  // fallback for a client without the raw fields: its parser, guarded
  try {
    const h = msg.headers;
    const headers: Record<string, string> = {};
    const repeated: string[] = [];
    for (const k of h?.keys() ?? []) {
      const values = h!.values(k);
      if (values.length > 1) repeated.push(k);
      put(headers, k, values[0] ?? "");
    }
    return { headers, repeated };
  } catch (err) {
    return {
      headers: {},
      repeated: [],
      problem: { reason: "header_syntax", detail: `unreadable: ${(err as Error).message}` },
    };
  }
}

export function toBusMessage(msg: Msg): BusMessage {
  const { headers, repeated, problem } = readHeaders(msg);
  return {
    subject: msg.subject,
    headers,
    data: msg.data,
    ...(msg.reply ? { reply: msg.reply } : {}),
    ...(repeated.length > 0 ? { repeatedHeaders: repeated } : {}),
    ...(problem ? { headerProblem: problem } : {}),
  };
}

/**
 * Whether `msg` is the server's "no responders" answer to a request: no
 * payload, status 503 (sent to the request's reply subject when nobody
 * subscribes to its subject).
 *
 * @example
 * ```ts
 * import type { Msg } from "@nats-io/transport-node";
 * declare const msg: Msg;
 * if (isNoResponders(msg)) console.log("nobody listens on the request's subject");
 * ```
 */
export function isNoResponders(msg: Msg): boolean {
  if (msg.data.length !== 0) return false;
  const block = rawHeaderBlock(msg);
  if (block === null) return false;
  if (block !== undefined) return headerStatus(block) === 503;
  // a client without the raw fields: its own reading of the status line
  try {
    return msg.headers?.code === 503;
  } catch {
    return false;
  }
}
