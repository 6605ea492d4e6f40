/**
 * The partition leases one sidecar holds (`./partition_owner.ts` decides
 * which): each partition with the revision of its lease, renewed at that
 * revision, counted, logged and told to the pipeline as it is taken and
 * given up, and deleted on leave so peers need not wait a TTL for it.
 *
 * @module
 */
import type { LeaseStore } from "../bus/leases.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import { PARTITION } from "./partition_view.ts";

/** Why a sidecar gave a partition up. */
export type ReleaseReason = "rebalance" | "lost" | "unrenewed" | "shutdown";

/** What a {@linkcode HeldLeases} needs (and, but for `value`, a `PartitionOwner`). */
export interface HeldLeasesOptions {
  store: LeaseStore;
  /** This sidecar's id among its peers (unique: a hostname, pid and random suffix). */
  member: string;
  /** What our leases hold: the member's name and its process's nonce (`leaseValue`). */
  value: string;
  /** Start taking `partition`'s frames; called once the lease is held. */
  onAcquire: (partition: number) => void | Promise<void>;
  /**
   * Stop taking `partition`'s frames before returning (synchronously: a
   * fence gives every partition up at once); forgetting its requests may
   * go on afterwards. Called before the lease is let go.
   */
  onRelease: (partition: number, reason: ReleaseReason) => void;
  log: Logger;
  telemetry: Telemetry;
}

/** How a partition came to be taken, as `partition.acquired` logs it. */
export interface AcquiredDetail {
  /** How long it had no owner, as far as this sidecar saw. */
  free_for_ms: number;
  /** The member whose lease it was, when one was left in the bucket. */
  previous?: string;
  /** The member it is assigned to, when that is not this one (`none`: nobody). */
  adopted_from?: string;
}

/**
 * Delete the key `key` at `revision`; when a write in flight moved it on (a
 * renewal, a heartbeat cut off by a stop's deadline), at the bucket's
 * revision if its value is still this process's (`ours`). False when it
 * could not be deleted: it then expires after a TTL.
 *
 * @example
 * ```ts
 * import type { LeaseStore } from "../bus/leases.ts";
 * declare const store: LeaseStore;
 * await removeOurs(store, "partition.3", 12, (v) => v === "sidecar-a#1f2e3d4c");
 * ```
 */
export async function removeOurs(
  store: LeaseStore,
  key: string,
  revision: number,
  ours: (value: string) => boolean,
): Promise<boolean> {
  try {
    if (await store.remove(key, revision)) return true;
    const entry = await store.get(key);
    return entry && ours(entry.value) ? await store.remove(key, entry.revision) : false;
  } catch {
    return false; // expires after a TTL: the peers go on without it then
  }
}

/**
 * The partitions this sidecar holds, each with its lease's revision.
 *
 * @example
 * ```ts
 * import type { LeaseStore } from "../bus/leases.ts";
 * import { Logger } from "../shared/log.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const store: LeaseStore;
 * const leases = new HeldLeases({
 *   store,
 *   member: "sidecar-a",
 *   value: "sidecar-a#1f2e3d4c",
 *   onAcquire: (p) => console.log("own", p),
 *   onRelease: (p, why) => console.log("release", p, why),
 *   log: new Logger(),
 *   telemetry: new Telemetry(),
 * });
 * const revision = await store.create("partition.3", "sidecar-a#1f2e3d4c");
 * if (revision !== null) await leases.hold(3, revision, { free_for_ms: 0 });
 * leases.release(3, "rebalance"); // logged, counted, onRelease(3, "rebalance")
 * ```
 */
export class HeldLeases {
  readonly #o: HeldLeasesOptions;
  /** Partition → the revision of our lease. */
  readonly #held = new Map<number, number>();
  #acquired = 0;
  #released = 0;

  constructor(opts: HeldLeasesOptions) {
    this.#o = opts;
  }

  /** Partitions held now. */
  get size(): number {
    return this.#held.size;
  }

  /** Partitions taken since start. */
  get acquired(): number {
    return this.#acquired;
  }

  /** Partitions given up since start. */
  get released(): number {
    return this.#released;
  }

  /** Whether partition `p` is held. */
  has(p: number): boolean {
    return this.#held.has(p);
  }

  /** The partitions held, in the order they were taken. */
  partitions(): number[] {
    return [...this.#held.keys()];
  }

  /** The partitions held with their leases' revisions, in the order they were taken. */
  entries(): [number, number][] {
    return [...this.#held];
  }

  /** Renew the lease on `p`; a conflicting write that holds our own value is ours (a lost answer). */
  async renew(p: number, revision: number): Promise<void> {
    const { store, value } = this.#o;
    const key = `${PARTITION}${p}`;
    let next = await store.update(key, value, revision);
    if (next === null) {
      const entry = await store.get(key);
      next = entry?.value === value ? await store.update(key, value, entry.revision) : null;
    }
    if (this.#held.get(p) !== revision) return; // fenced or released meanwhile
    if (next === null) this.release(p, "lost");
    else this.#held.set(p, next);
  }

  /** Hold `p` under the lease written at `revision`: counted, logged, then the pipeline told. */
  async hold(p: number, revision: number, detail: AcquiredDetail): Promise<void> {
    const { telemetry } = this.#o;
    this.#held.set(p, revision);
    this.#acquired++;
    telemetry.add("latentwatch.partition.acquired", 1);
    telemetry.set("latentwatch.partition.owned", 1, { partition: String(p) });
    telemetry.set("latentwatch.partitions.owned", this.#held.size);
    this.#o.log.info("partition.acquired", { member: this.#o.member, partition: p, ...detail });
    await this.#o.onAcquire(p);
  }

  /** Stop taking `p`'s frames now (synchronously), counted and logged. */
  release(p: number, reason: ReleaseReason): void {
    if (!this.#held.delete(p)) return;
    this.#released++;
    this.#o.telemetry.add("latentwatch.partition.released", 1, { reason });
    this.#o.telemetry.set("latentwatch.partition.owned", 0, { partition: String(p) });
    this.#o.telemetry.set("latentwatch.partitions.owned", this.#held.size);
    const fields = { member: this.#o.member, partition: p, reason };
    if (reason === "rebalance" || reason === "shutdown") {
      this.#o.log.info("partition.released", fields);
    } else this.#o.log.warn("partition.released", fields);
    try {
      this.#o.onRelease(p, reason);
    } catch (err) {
      this.#o.log.error("partition.release_failed", { ...fields, error: (err as Error).message });
    }
  }

  /** Give every partition up at once; returns what was held (partition, revision). */
  releaseAll(reason: ReleaseReason): [number, number][] {
    const held = this.entries();
    for (const [p] of held) this.release(p, reason);
    return held;
  }

  /** Delete our lease on `p`, written at `revision` or since by a renewal of ours in flight. */
  remove(p: number, revision: number): Promise<boolean> {
    const { store, value } = this.#o;
    return removeOurs(store, `${PARTITION}${p}`, revision, (v) => v === value);
  }
}
