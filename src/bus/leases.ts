/**
 * A small compare-and-set key/value store with expiring entries, behind an
 * interface so partition ownership (`src/serve/partition_owner.ts`) does not see
 * NATS. The NATS implementation is a JetStream KV bucket
 * (`./nats_leases.ts`): every write is a new revision, a write names the
 * revision it replaces, and an entry not rewritten within the bucket's TTL
 * goes away.
 *
 * @module
 */

/** One entry: its value and the revision that wrote it. */
export interface LeaseEntry {
  value: string;
  revision: number;
}

/** Compare-and-set writes over keys that expire when not rewritten. */
export interface LeaseStore {
  /** Every live entry whose key starts with `prefix` (deleted keys are left out). */
  list(prefix: string): Promise<Map<string, LeaseEntry>>;
  /** The live entry of `key`, or null when it has none (absent, deleted or expired). */
  get(key: string): Promise<LeaseEntry | null>;
  /** Write `value` under `key` when no live entry has it; the new revision, or null when one does. */
  create(key: string, value: string): Promise<number | null>;
  /** Replace the entry at `revision`; the new revision, or null when `key` was written since. */
  update(key: string, value: string, revision: number): Promise<number | null>;
  /** Overwrite regardless of revision (a member's own heartbeat); the new revision. */
  put(key: string, value: string): Promise<number>;
  /** Delete the entry at `revision`; false when `key` was written since. */
  remove(key: string, revision: number): Promise<boolean>;
  /** Entries live this long without a rewrite (milliseconds). */
  readonly ttlMs: number;
  /** Copies the store keeps (in a cluster). */
  readonly replicas: number;
}

/** A lease store could not be opened or does not match what was asked for. */
export class LeaseStoreError extends Error {
  override name = "LeaseStoreError";
  constructor(
    /** The bucket. */
    readonly bucket: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(`lease bucket '${bucket}': ${message}`, options);
  }
}

/**
 * `store` seen through a key prefix: every key this view reads or writes is
 * `prefix` + key, and listings come back without it. Lets several monitors
 * share one bucket (one stream to grant in NATS permissions).
 *
 * @example
 * ```ts
 * declare const bucket: LeaseStore;
 * const demo = scopedLeases(bucket, "demo.");
 * await demo.create("partition.0", "sidecar-a"); // key "demo.partition.0" in the bucket
 * ```
 */
export function scopedLeases(store: LeaseStore, prefix: string): LeaseStore {
  return {
    ttlMs: store.ttlMs,
    replicas: store.replicas,
    list: async (p) => {
      const out = new Map<string, LeaseEntry>();
      for (const [k, e] of await store.list(`${prefix}${p}`)) out.set(k.slice(prefix.length), e);
      return out;
    },
    get: (k) => store.get(`${prefix}${k}`),
    create: (k, v) => store.create(`${prefix}${k}`, v),
    update: (k, v, r) => store.update(`${prefix}${k}`, v, r),
    put: (k, v) => store.put(`${prefix}${k}`, v),
    remove: (k, r) => store.remove(`${prefix}${k}`, r),
  };
}
