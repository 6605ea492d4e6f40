/**
 * A JetStream-like durable stream held in memory, for the in-process bus
 * ({@linkcode ./memory_bus.ts}): the subjects it captures, its messages with
 * sequence numbers (bounded, the oldest discarded first), and `Nats-Msg-Id`
 * dedup inside the stream's duplicate window.
 *
 * @module
 */
import type { DurableAck, StreamSpec } from "./bus.ts";
import { splitSubject, subjectMatches } from "./memory_subjects.ts";

/** No stream exists with that name, or none captures the subject. */
export class StreamError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "StreamError";
  }
}

/** A message stored in a {@linkcode MemoryStream} (and so in a `MemoryBus` stream). */
export interface StoredMessage {
  seq: number;
  subject: string;
  /** Headers as published, plus `Nats-Msg-Id`. */
  headers: Record<string, string>;
  data: Uint8Array;
  /** Time stored, ms since the epoch (from the bus's clock). */
  time: number;
}

/** One message for {@linkcode MemoryStream.store}. */
export interface StoreOptions {
  subject: string;
  /** Headers as published, `Nats-Msg-Id` included; copied into the stored message. */
  headers: Record<string, string>;
  /** The bytes, kept as they are (the caller hands over its own copy). */
  data: Uint8Array;
  /** Dedup id: one seen within the duplicate window is not stored again. */
  msgId: string;
  /** Time of the publish, ms since the epoch. */
  now: number;
}

/**
 * One durable stream of the in-process bus: which subjects it captures,
 * what it holds, and the ids it has seen within its duplicate window.
 *
 * @example
 * ```ts
 * const stream = new MemoryStream({ name: "ALERTS", subjects: ["alerts.>"], duplicateWindowMs: 1000 }, 100);
 * const msg = { subject: "alerts.a", headers: {}, data: new Uint8Array(1), msgId: "id-1", now: 0 };
 * stream.store(msg); // { stream: "ALERTS", seq: 1, duplicate: false }
 * stream.store({ ...msg, now: 999 }); // { stream: "ALERTS", seq: 1, duplicate: true }
 * ```
 */
export class MemoryStream {
  readonly #maxMessages: number;
  #spec: StreamSpec;
  #subjects: string[][];
  #messages: StoredMessage[] = [];
  #lastSeq = 0;
  /** msgId → original seq and time, in time order */
  #ids = new Map<string, { seq: number; time: number }>();

  /**
   * A new, empty stream keeping at most `maxMessages` messages. Throws
   * {@linkcode StreamError} on a name with whitespace, `.`, `*` or `>`, and
   * `SubjectError` on a subject that is not valid NATS filter syntax.
   */
  constructor(spec: StreamSpec, maxMessages: number) {
    if (!/^[^\s.*>]+$/.test(spec.name)) {
      throw new StreamError(
        `stream name ${JSON.stringify(spec.name)}: expected no whitespace, '.', '*' or '>'`,
      );
    }
    this.#subjects = spec.subjects.map((s) => splitSubject(s, true));
    this.#spec = { ...spec, subjects: [...spec.subjects] };
    this.#maxMessages = maxMessages;
  }

  /** The stream's name. */
  get name(): string {
    return this.#spec.name;
  }

  /**
   * Add the subjects of `spec` this stream lacks, and take its other settings
   * (the latest duplicate window applies). Throws `SubjectError`, changing
   * nothing, when a new subject is not valid NATS filter syntax.
   *
   * @example
   * ```ts
   * const stream = new MemoryStream({ name: "S", subjects: ["a"], duplicateWindowMs: 1000 }, 100);
   * stream.extend({ name: "S", subjects: ["b"], duplicateWindowMs: 1000 });
   * stream.captures(["b"]); // true
   * ```
   */
  extend(spec: StreamSpec): void {
    const have = new Set(this.#spec.subjects);
    const subjects = [...this.#spec.subjects, ...spec.subjects.filter((s) => !have.has(s))];
    const tokens = subjects.map((s) => splitSubject(s, true));
    this.#spec = { ...spec, subjects };
    this.#subjects = tokens;
  }

  /**
   * Whether one of the stream's subjects matches a published subject's tokens.
   *
   * @example
   * ```ts
   * const stream = new MemoryStream({ name: "S", subjects: ["a.*"], duplicateWindowMs: 1000 }, 100);
   * stream.captures(["a", "b"]); // true
   * stream.captures(["a", "b", "c"]); // false
   * ```
   */
  captures(tokens: readonly string[]): boolean {
    return this.#subjects.some((f) => subjectMatches(f, tokens));
  }

  /**
   * Store a message under the next sequence number, unless its `msgId` was
   * stored less than the duplicate window ago: then nothing is stored and
   * the ack says `duplicate: true` with the original sequence number. Past
   * the stream's bound the oldest message is discarded.
   *
   * @example
   * ```ts
   * const stream = new MemoryStream({ name: "S", subjects: ["a"], duplicateWindowMs: 10 }, 100);
   * const msg = { subject: "a", headers: {}, data: new Uint8Array(1), msgId: "x", now: 0 };
   * stream.store(msg); // { stream: "S", seq: 1, duplicate: false }
   * stream.store({ ...msg, now: 10 }); // { stream: "S", seq: 2, duplicate: false }: the window passed
   * ```
   */
  store({ subject, headers, data, msgId, now }: StoreOptions): DurableAck {
    const window = this.#spec.duplicateWindowMs;
    for (const [id, seen] of this.#ids) {
      if (now - seen.time < window) break; // insertion order = time order
      this.#ids.delete(id);
    }
    const seen = this.#ids.get(msgId);
    if (seen !== undefined) return { stream: this.#spec.name, seq: seen.seq, duplicate: true };
    const seq = ++this.#lastSeq;
    this.#ids.set(msgId, { seq, time: now });
    this.#messages.push({ seq, subject, headers: { ...headers }, data, time: now });
    if (this.#messages.length > this.#maxMessages) this.#messages.shift();
    return { stream: this.#spec.name, seq, duplicate: false };
  }

  /**
   * The messages the stream holds, oldest first (a fresh array).
   *
   * @example
   * ```ts
   * const stream = new MemoryStream({ name: "S", subjects: ["a"], duplicateWindowMs: 10 }, 100);
   * stream.messages(); // []
   * ```
   */
  messages(): StoredMessage[] {
    return [...this.#messages];
  }
}
