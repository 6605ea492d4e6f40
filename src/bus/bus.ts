/**
 * The message bus the sidecar talks through, behind one interface so the
 * pipeline runs on a real NATS server ({@linkcode ./nats_bus.ts}) or, for the
 * zero-setup demo only, in process ({@linkcode ./memory_bus.ts}).
 *
 * @module
 */
import type { HeaderProblem } from "./nats_headers.ts";
import type { LeaseStore } from "./leases.ts";
import type { ReadChunkStats } from "./read_chunks.ts";

export type { HeaderProblem } from "./nats_headers.ts";

/** A received message. Header names are as sent (case preserved). */
export interface BusMessage {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
  /** Where an answer goes, when the message is a request (a gated frame). */
  reply?: string;
  /**
   * Header names (as spelled) given more than once; `headers` holds the
   * first value of each. Set by buses that read raw header blocks (NATS).
   */
  repeatedHeaders?: string[];
  /**
   * The header block could not be read in full (a name with a space or a
   * non-ASCII byte, a value that is not UTF-8, a line without a colon);
   * `headers` then holds the lines that could be read.
   */
  headerProblem?: HeaderProblem;
}

/** A request got no answer: nobody listens on the subject, or none came in time. */
export class BusRequestError extends Error {
  constructor(
    readonly kind: "timeout" | "no_responders",
    readonly subject: string,
    readonly timeoutMs: number,
    options?: ErrorOptions,
  ) {
    super(
      kind === "timeout"
        ? `request on '${subject}': expected a reply within ${timeoutMs} ms, found none`
        : `request on '${subject}': expected a subscriber to answer, found no responders`,
      options,
    );
    this.name = "BusRequestError";
  }
}

/** Options of {@linkcode Bus.subscribe}. */
export interface SubscribeOptions {
  /**
   * The handler borrows each message's `data`: it reads or copies the bytes
   * before it returns and keeps no view of them, so the bus may reuse them
   * for later messages (NATS: the connection's read chunks, without which a
   * fast subscriber's reads drive V8's full collections; `read_chunks.ts`).
   * The memory bus overwrites a borrowed message's bytes once its handler
   * returns, so a handler that keeps a view fails its tests.
   */
  borrows?: boolean;
}

/** A live subscription. */
export interface BusSubscription {
  unsubscribe(): void;
  /**
   * True while the subscription can deliver: not unsubscribed, not closed
   * by the server (a NATS subscription closed by a permission error is
   * re-opened, and reads false until then).
   */
  readonly active: boolean;
}

/** A subscription handler threw; the message is lost, the subscription goes on. */
export class BusHandlerError extends Error {
  constructor(readonly subject: string, options?: ErrorOptions) {
    super(
      `handler of subscription '${subject}': expected it to return, found it threw: ${
        (options?.cause as Error)?.message ?? String(options?.cause)
      }`,
      options,
    );
    this.name = "BusHandlerError";
  }
}

/** A subscription was closed by the server (or the client) without being unsubscribed. */
export class SubscriptionClosedError extends Error {
  constructor(readonly subject: string, options?: ErrorOptions) {
    super(
      `subscription '${subject}': expected it open, found it closed${
        options?.cause ? ` (${(options.cause as Error).message ?? String(options.cause)})` : ""
      }; re-subscribing`,
      options,
    );
    this.name = "SubscriptionClosedError";
  }
}

/** How the bus's delivery is doing, for readiness and `/stats`. */
export interface BusHealth {
  /** Connected to a server. */
  connected: boolean;
  /**
   * The connection answers: the last liveness probe (a PING whose PONG goes
   * through the same read loop as the messages) came back in time.
   */
  delivering: boolean;
  /** The last error seen (status event, failed probe, closed subscription), with its time. */
  lastError?: { message: string; at: string };
}

/** Result of a durable publish. */
export interface DurableAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/** Settings of a durable (JetStream) stream. */
export interface StreamSpec {
  name: string;
  subjects: string[];
  /** Dedup window in milliseconds. */
  duplicateWindowMs: number;
  /** Copies kept in a cluster when the stream is created (default 1). */
  replicas?: number;
}

/** Settings of a lease bucket (see {@linkcode Bus.openLeases}). */
export interface LeaseSpec {
  bucket: string;
  /** Milliseconds an entry lives without a rewrite. */
  ttlMs: number;
  /** Copies kept in a cluster. */
  replicas: number;
  /**
   * Opening keeps trying through transient failures (a request that times
   * out, a cluster still electing its JetStream leader) for this long (ms,
   * default 30,000), then fails.
   */
  openDeadlineMs?: number;
  /** Called before each new try, with what failed. */
  onOpenRetry?: (retry: LeaseOpenRetry) => void;
}

/** One failed try to open a lease bucket, about to be tried again. */
export interface LeaseOpenRetry {
  bucket: string;
  /** Tries so far (1 after the first failure). */
  attempt: number;
  /** What the try failed with. */
  error: string;
  /** Milliseconds until the next try. */
  waitMs: number;
}

/** The longest request timeout a bus takes: what a timer can hold (2³¹−1 ms, about 24.8 days). */
export const MAX_REQUEST_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Throw a `RangeError` unless `timeoutMs` is a request timeout a bus takes
 * (more than 0, at most {@linkcode MAX_REQUEST_TIMEOUT_MS}).
 *
 * @example
 * ```ts
 * checkRequestTimeout(1000); // fine
 * // checkRequestTimeout(Infinity) throws a RangeError
 * ```
 */
export function checkRequestTimeout(timeoutMs: number): void {
  if (!(timeoutMs > 0 && timeoutMs <= MAX_REQUEST_TIMEOUT_MS)) {
    throw new RangeError(
      `request: expected a timeout of more than 0 and at most ${MAX_REQUEST_TIMEOUT_MS} ms, found ${timeoutMs}`,
    );
  }
}

/** Core publish/subscribe plus durable alert publishing with dedup. */
export interface Bus {
  /** Largest payload (bytes, headers included) the server accepts. */
  readonly maxPayload: number;
  /** Fire-and-forget publish (to a subject, or to a request's `reply` subject). */
  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void;
  /**
   * Publish `data` as a request and resolve with the first reply; rejects
   * with {@linkcode BusRequestError} on timeout or when nobody listens.
   * `timeoutMs` is more than 0 and at most {@linkcode MAX_REQUEST_TIMEOUT_MS}.
   */
  request(
    subject: string,
    data: Uint8Array,
    headers: Record<string, string> | undefined,
    timeoutMs: number,
  ): Promise<BusMessage>;
  /**
   * Subscribe; `handler` runs synchronously per message, in arrival order.
   * `onError` hears subscription errors (a permission violation, a slow
   * consumer), which otherwise mean frames stop arriving with no trace.
   */
  subscribe(
    subject: string,
    handler: (msg: BusMessage) => void,
    onError?: (err: Error) => void,
    opts?: SubscribeOptions,
  ): BusSubscription;
  /** Create the stream if missing (or check it matches). */
  ensureStream(spec: StreamSpec): Promise<void>;
  /** Publish durably and wait for the server's ack; `msgId` deduplicates. */
  publishDurable(
    subject: string,
    data: Uint8Array,
    msgId: string,
    headers?: Record<string, string>,
  ): Promise<DurableAck>;
  /**
   * Open a compare-and-set store of expiring entries (a JetStream KV bucket
   * on NATS), for partition leases; buses without one leave it out.
   */
  openLeases?(spec: LeaseSpec): Promise<LeaseStore>;
  /** Wait until everything published so far reached the server. */
  flush(): Promise<void>;
  /** True while connected. */
  readonly connected: boolean;
  /** Delivery health beyond `connected` (buses without a liveness probe leave it out). */
  readonly health?: BusHealth;
  /**
   * The connection's read chunks: allocated, reused for borrowing
   * subscriptions, and left to the garbage collector (NATS over the Deno
   * transport; null or absent elsewhere).
   */
  readonly readChunks?: ReadChunkStats | null;
  close(): Promise<void>;
}
