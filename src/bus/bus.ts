/**
 * The message bus the sidecar talks through, behind one interface so the
 * pipeline runs on a real NATS server ({@linkcode ./nats_bus.ts}) or, for the
 * zero-setup demo only, in process ({@linkcode ./memory_bus.ts}).
 *
 * @module
 */

/** A received message. Header names are as sent (case preserved). */
export interface BusMessage {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
  /** Where an answer goes, when the message is a request (a gated frame). */
  reply?: string;
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

/** A live subscription. */
export interface BusSubscription {
  unsubscribe(): void;
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
  /** Wait until everything published so far reached the server. */
  flush(): Promise<void>;
  /** True while connected. */
  readonly connected: boolean;
  close(): Promise<void>;
}
