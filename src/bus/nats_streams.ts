/**
 * JetStream streams set up for `NatsBus` (./nats_bus.ts): a stream is
 * created, or given the subjects it lacks, with the calls for one stream name
 * serialised in this client and a concurrent create by another client
 * retried as an update.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import type { StreamSpec } from "./bus.ts";
import { classifyBusError } from "./errors.ts";

/**
 * Sets up the streams of one connection ({@linkcode NatsStreams.ensure}).
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * const nc = await connect({ servers: "127.0.0.1:4222" });
 * const streams = new NatsStreams(nc);
 * await streams.ensure({ name: "ALERTS", subjects: ["alerts.>"], duplicateWindowMs: 120_000 });
 * await nc.close();
 * ```
 */
export class NatsStreams {
  readonly #nc: NatsConnection;
  /** Per stream name, the last {@linkcode NatsStreams.ensure} call's completion. */
  readonly #streamQueue = new Map<string, Promise<void>>();

  constructor(nc: NatsConnection) {
    this.#nc = nc;
  }

  /**
   * Create the stream, or add the subjects it lacks. Calls for one stream
   * name are serialised in this client (each reads the stream's config right
   * before its update), so concurrent callers with different subjects all
   * end up in the stream; a concurrent create by another client is retried
   * as an update.
   */
  ensure(spec: StreamSpec): Promise<void> {
    const before = this.#streamQueue.get(spec.name) ?? Promise.resolve();
    const mine = before.then(() => this.#ensureStream(spec));
    const tail = mine.catch(() => {});
    this.#streamQueue.set(spec.name, tail);
    // forget the chain once it is idle, so the map does not grow with stream names
    tail.then(() => {
      if (this.#streamQueue.get(spec.name) === tail) this.#streamQueue.delete(spec.name);
    });
    return mine;
  }

  async #ensureStream(spec: StreamSpec): Promise<void> {
    const jsm = await jetstreamManager(this.#nc);
    const duplicateWindowNs = spec.duplicateWindowMs * 1_000_000;
    for (let attempt = 0;; attempt++) {
      try {
        const info = await jsm.streams.info(spec.name);
        const missing = spec.subjects.filter((s) => !info.config.subjects?.includes(s));
        if (missing.length > 0) {
          await jsm.streams.update(spec.name, {
            ...info.config,
            subjects: [...(info.config.subjects ?? []), ...missing],
          });
        }
        return;
      } catch (err) {
        if (!isStreamNotFound(err)) throw err;
      }
      try {
        await jsm.streams.add({
          name: spec.name,
          subjects: spec.subjects,
          duplicate_window: duplicateWindowNs,
          num_replicas: spec.replicas ?? 1,
        });
        return;
      } catch (err) {
        // another client created it meanwhile: add the subjects to theirs
        if (!isStreamNameInUse(err) || attempt >= 2) throw err;
      }
    }
  }
}

function isStreamNotFound(err: unknown): boolean {
  return classifyBusError(err) === "stream_not_found";
}

function isStreamNameInUse(err: unknown): boolean {
  return classifyBusError(err) === "stream_name_in_use";
}
