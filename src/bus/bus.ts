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
  /** Fire-and-forget publish. */
  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void;
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
