/**
 * {@linkcode LeaseStore} over a JetStream KV bucket (NATS 2.9 and later):
 * the bucket's `max_age` is the lease TTL, `create` and `update` are the
 * server's expected-last-sequence checks, so two clients can never both
 * believe they wrote a key at the same revision.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import {
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import { type KV, Kvm, type KvStatus } from "@nats-io/kv";
import { type LeaseEntry, type LeaseStore, LeaseStoreError } from "./leases.ts";
import { BusRequestError, type LeaseOpenRetry } from "./bus.ts";
import { isTransientBusError } from "./errors.ts";
import { Backoff } from "../shared/backoff.ts";
import { within } from "../shared/within.ts";

/** Options of {@linkcode openNatsLeases}. */
export interface NatsLeaseOptions {
  /** Bucket name (letters, digits, `_`, `-`). */
  bucket: string;
  /** Milliseconds an entry lives without a rewrite (the bucket's max age). */
  ttlMs: number;
  /** Copies kept in a cluster (1, 3 or 5; a single server holds 1). */
  replicas: number;
  /** Keep trying to open through transient failures for this long (ms, default {@linkcode LEASE_OPEN_DEADLINE_MS}). */
  openDeadlineMs?: number;
  /** Called before each new try to open the bucket. */
  onOpenRetry?: (retry: LeaseOpenRetry) => void;
  /** Each JetStream request's timeout (ms; the client's default, 5,000, when absent). */
  requestTimeoutMs?: number;
}

/**
 * How long opening a lease bucket keeps trying through transient failures:
 * sidecars often start with a cluster that is still electing its JetStream
 * leader, or busy creating the same bucket for their peers.
 */
export const LEASE_OPEN_DEADLINE_MS = 30_000;

const utf8 = new TextDecoder();

/** Compare-and-set conflicts: another writer got there first. */
function isConflict(err: unknown): boolean {
  return err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence ||
      err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

/**
 * Open (creating when missing) the KV bucket `opts.bucket` on `nc`. An
 * existing bucket whose TTL differs from `opts.ttlMs` is refused: sidecars
 * sharing partitions must agree on how long a lease lives.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * const nc = await connect({ servers: "127.0.0.1:4222" });
 * const leases = await openNatsLeases(nc, { bucket: "lw_demo", ttlMs: 10_000, replicas: 1 });
 * await leases.create("partition.0", "sidecar-a");
 * await nc.close();
 * ```
 */
export async function openNatsLeases(
  nc: NatsConnection,
  opts: NatsLeaseOptions,
): Promise<LeaseStore> {
  const { kv, status } = await openBucket(nc, opts);
  checkTtl(status, opts);
  return new NatsLeases(nc, opts, kv, status.replicas);
}

/**
 * Open the bucket, creating it when missing, and read its status; a
 * transient failure of either is tried again (waits doubling from 250 ms
 * to 2 s) until `openDeadlineMs`. (The status is a request of its own: a
 * cluster busy electing leaders can time it out just after the open.)
 */
async function openBucket(
  nc: NatsConnection,
  opts: NatsLeaseOptions,
): Promise<{ kv: KV; status: KvStatus }> {
  const deadline = Date.now() + (opts.openDeadlineMs ?? LEASE_OPEN_DEADLINE_MS);
  const js = jetstream(nc, opts.requestTimeoutMs ? { timeout: opts.requestTimeoutMs } : {});
  const backoff = new Backoff(250, 2000);
  for (let attempt = 1;; attempt++) {
    try {
      // one try makes several requests, each with its own timeout: the deadline bounds them all
      const leftMs = Math.max(1, deadline - Date.now());
      const opened = await within(
        (async () => {
          const kv = await new Kvm(js).create(opts.bucket, {
            ttl: opts.ttlMs,
            history: 1,
            replicas: opts.replicas,
          });
          return { kv, status: await kv.status() };
        })(),
        leftMs,
      );
      if (opened === undefined) throw new BusRequestError("timeout", "$JS.API (open)", leftMs);
      return opened;
    } catch (err) {
      const error = (err as Error).message;
      const waitMs = backoff.delay;
      if (!isTransientBusError(err) || Date.now() + waitMs >= deadline) {
        throw new LeaseStoreError(
          opts.bucket,
          `expected to open or create it (TTL ${opts.ttlMs} ms, ${opts.replicas} replicas), ` +
            `found: ${error}${attempt > 1 ? ` (${attempt} tries)` : ""}`,
          { cause: err },
        );
      }
      opts.onOpenRetry?.({ bucket: opts.bucket, attempt, error, waitMs });
      await new Promise((r) => setTimeout(r, waitMs));
      backoff.grow();
    }
  }
}

/**
 * An existing bucket (opened, or created again by a peer) must live as long
 * as `opts.ttlMs`: sidecars sharing partitions must agree on how long a
 * lease lives.
 */
function checkTtl(status: KvStatus, opts: NatsLeaseOptions): void {
  if (Math.abs(status.ttl - opts.ttlMs) <= 1) return;
  throw new LeaseStoreError(
    opts.bucket,
    `expected a TTL of ${opts.ttlMs} ms (scale_out.lease_ttl_ms), found ${status.ttl} ms; ` +
      "every monitor sharing a bucket must use the same lease TTL: give this one the same, " +
      "or its own scale_out.bucket (and grant that bucket in the NATS permissions)",
  );
}

/** The bucket's stream is gone (deleted, or a server restarted without its store). */
function isBucketGone(err: unknown): boolean {
  if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) {
    return true;
  }
  return /stream not found|jetstream is not enabled/i.test((err as Error)?.message ?? "");
}

class NatsLeases implements LeaseStore {
  readonly ttlMs: number;
  #kv: KV;
  #jsm: Promise<JetStreamManager> | null = null;

  constructor(
    readonly nc: NatsConnection,
    readonly opts: NatsLeaseOptions,
    kv: KV,
    readonly replicas: number,
  ) {
    this.ttlMs = opts.ttlMs;
    this.#kv = kv;
  }

  /** Run `op`; when the bucket has disappeared, create it again once and retry. */
  async #bucket<T>(op: (kv: KV) => Promise<T>): Promise<T> {
    try {
      return await op(this.#kv);
    } catch (err) {
      if (!isBucketGone(err)) throw err;
      const { kv, status } = await openBucket(this.nc, this.opts);
      checkTtl(status, this.opts); // created again, by a peer perhaps
      this.#kv = kv;
      return await op(this.#kv);
    }
  }

  /**
   * The bucket's keys under `prefix` from the stream's subjects (one
   * request, paged by the client past the server's page), then each key's
   * entry. Not `kv.keys()`: its consumer ends at a message with nothing
   * pending after it, which peers rewriting their keys every heartbeat can
   * put off for as long as they write (the round then never ended).
   */
  list(prefix: string): Promise<Map<string, LeaseEntry>> {
    return this.#bucket(async (kv) => {
      const out = new Map<string, LeaseEntry>();
      const subjects = `$KV.${this.opts.bucket}.`;
      // no API check: it would be a request of its own, each round, for nothing
      this.#jsm ??= jetstreamManager(this.nc, {
        checkAPI: false,
        ...(this.opts.requestTimeoutMs ? { timeout: this.opts.requestTimeoutMs } : {}),
      });
      const info = await (await this.#jsm).streams.info(`KV_${this.opts.bucket}`, {
        subjects_filter: `${subjects}${prefix}>`,
      });
      const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(subjects.length));
      await Promise.all(keys.map(async (k) => {
        const e = await kv.get(k);
        if (e && e.operation === "PUT") {
          out.set(k, { value: utf8.decode(e.value), revision: e.revision });
        }
      }));
      return out;
    });
  }

  get(key: string): Promise<LeaseEntry | null> {
    return this.#bucket(async (kv) => {
      const e = await kv.get(key);
      return e && e.operation === "PUT"
        ? { value: utf8.decode(e.value), revision: e.revision }
        : null;
    });
  }

  create(key: string, value: string): Promise<number | null> {
    return this.#bucket(async (kv) => {
      try {
        return await kv.create(key, value);
      } catch (err) {
        if (isConflict(err)) return null;
        throw err;
      }
    });
  }

  update(key: string, value: string, revision: number): Promise<number | null> {
    return this.#bucket(async (kv) => {
      try {
        return await kv.update(key, value, revision);
      } catch (err) {
        if (isConflict(err)) return null;
        throw err;
      }
    });
  }

  put(key: string, value: string): Promise<number> {
    return this.#bucket((kv) => kv.put(key, value));
  }

  remove(key: string, revision: number): Promise<boolean> {
    return this.#bucket(async (kv) => {
      try {
        await kv.delete(key, { previousSeq: revision });
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    });
  }
}
