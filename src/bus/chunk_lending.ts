/**
 * The bus side of read-chunk reuse (`read_chunks.ts`): counts the messages
 * handed to borrowing handlers and lends the connection's current transport
 * the two totals it compares. nats.js makes a new transport per
 * (re)connection and does not say so; the transport in use is looked up on
 * each borrowed message (one property read) and lent to when it changed.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { DenoTransport } from "./deno_transport.ts";
import type { ReadChunkStats } from "./read_chunks.ts";

/** The client internals this reads: the protocol handler's current transport. */
interface WithProtocol {
  protocol?: { transport?: unknown };
}

/**
 * One NATS connection's count of borrowed messages.
 *
 * @example
 * ```ts
 * import type { NatsConnection } from "@nats-io/transport-node";
 * import { ChunkLending } from "./chunk_lending.ts";
 * declare const nc: NatsConnection;
 * const lending = new ChunkLending(nc);
 * lending.borrowedOne(); // in a borrowing handler's wrapper, per message
 * lending.stats; // { allocated, reused, kept } on the Deno transport, else null
 * ```
 */
export class ChunkLending {
  readonly #nc: NatsConnection;
  #borrowed = 0;
  #lentTo: unknown = null;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
  }

  /** Count one message handed to a handler that keeps no view of its bytes. */
  borrowedOne(): void {
    this.#borrowed++;
    const transport = this.#transport();
    if (transport === this.#lentTo) return;
    this.#lentTo = transport;
    if (transport instanceof DenoTransport) {
      transport.lendChunksWhen({
        parsed: () => this.#nc.stats().inMsgs,
        borrowed: () => this.#borrowed,
      });
    }
  }

  /** The current connection's read chunks (null on a transport that does not pool them). */
  get stats(): ReadChunkStats | null {
    const transport = this.#transport();
    return transport instanceof DenoTransport ? transport.readChunkStats : null;
  }

  #transport(): unknown {
    return (this.#nc as unknown as WithProtocol).protocol?.transport;
  }
}
