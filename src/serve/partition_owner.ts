/**
 * Partition ownership among sidecars, coordinated through a lease store (a
 * JetStream KV bucket) and nothing else: each sidecar heartbeats a member
 * key, computes from the live members which partitions it should own
 * (`src/core/frame/assign.ts`, the same answer everywhere), and holds those
 * with compare-and-set leases it renews every heartbeat. A sidecar that
 * joins takes its share as the others hand theirs over; one that leaves
 * deletes its leases; one that dies stops renewing, and its leases count as
 * expired once their revision has not changed for a TTL by the observer's
 * clock (the bucket's max age removes them too). A sidecar that cannot
 * renew for most of a TTL gives its partitions up on its own, so two
 * sidecars never both own one (docs/scale-out.md).
 *
 * @module
 */
import { assignPartitions } from "../core/frame/assign.ts";
import type { LeaseEntry, LeaseStore } from "../bus/leases.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";

/** Why a sidecar gave a partition up. */
export type ReleaseReason = "rebalance" | "lost" | "unrenewed" | "shutdown";

/** What a {@linkcode PartitionOwner} needs. */
export interface PartitionOwnerOptions {
  store: LeaseStore;
  /** This sidecar's id among its peers (unique: a hostname, pid and random suffix). */
  member: string;
  partitions: number;
  /** Milliseconds between rounds (renewals). */
  heartbeatMs: number;
  /** Start taking `partition`'s frames; called once the lease is held. */
  onAcquire: (partition: number) => void | Promise<void>;
  /** Stop taking `partition`'s frames and forget its requests; called before the lease is let go. */
  onRelease: (partition: number, reason: ReleaseReason) => void | Promise<void>;
  log: Logger;
  telemetry: Telemetry;
  /** Monotonic milliseconds (tests pass their own clock). */
  now?: () => number;
}

/** What `/stats` and `/partitions` show. */
export interface OwnershipStats {
  member: string;
  partitions: number;
  owned: number[];
  /** Live members as last seen, this one included. */
  members: string[];
  /** Milliseconds a lease lives without renewal. */
  lease_ttl_ms: number;
  /** Partitions acquired and released since start. */
  acquired: number;
  released: number;
  /** Rounds whose store access failed. */
  errors: number;
}

/** `p`, or undefined once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

const MEMBER = "member.";
const PARTITION = "partition.";

/**
 * One sidecar's share of the partitions.
 *
 * @example
 * ```ts
 * import type { LeaseStore } from "../bus/leases.ts";
 * import { Logger } from "../shared/log.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const store: LeaseStore;
 * const owner = new PartitionOwner({
 *   store,
 *   member: "sidecar-a",
 *   partitions: 16,
 *   heartbeatMs: 2000,
 *   onAcquire: (p) => console.log("own", p),
 *   onRelease: (p, why) => console.log("release", p, why),
 *   log: new Logger(),
 *   telemetry: new Telemetry(),
 * });
 * await owner.start();
 * owner.owned; // e.g. Set {0, 5, 9, ...}
 * await owner.stop();
 * ```
 */
export class PartitionOwner {
  readonly #o: PartitionOwnerOptions;
  readonly #now: () => number;
  /** Partition → the revision of our lease. */
  readonly #held = new Map<number, number>();
  /** Key → (revision, when this sidecar first saw that revision): leases not renewed for a TTL are dead. */
  readonly #seen = new Map<string, { revision: number; at: number }>();
  /** Partition → rounds it has been free while its assigned owner did not take it. */
  readonly #freeRounds = new Map<number, number>();
  #members: string[] = [];
  #lastRenewed = -Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fenceTimer: ReturnType<typeof setInterval> | undefined;
  #round: Promise<void> = Promise.resolve();
  #stopped = false;
  #acquired = 0;
  #released = 0;
  #errors = 0;
  readonly #mismatched = new Set<string>();

  constructor(opts: PartitionOwnerOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Partitions this sidecar owns now. */
  get owned(): ReadonlySet<number> {
    return new Set(this.#held.keys());
  }

  /** Join: one round now (errors logged, not thrown), then one every heartbeat. */
  async start(): Promise<void> {
    this.#o.log.info("partitions.joining", {
      member: this.#o.member,
      partitions: this.#o.partitions,
      lease_ttl_ms: this.#o.store.ttlMs,
      heartbeat_ms: this.#o.heartbeatMs,
    });
    await this.round();
    this.#schedule();
    // checked apart from the rounds: a round can hang on a broker that went away
    this.#fenceTimer = setInterval(() => this.#fence(), Math.max(25, this.#o.heartbeatMs / 4));
  }

  /** Leave: stop the rounds, release every partition and delete the leases, so peers take them at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#fenceTimer);
    // a round hung on a broker that went away must not hold the shutdown:
    // two heartbeats for all of it
    const deadline = this.#now() + 2 * this.#o.heartbeatMs;
    const bounded = <T>(p: Promise<T>) => within(p, Math.max(0, deadline - this.#now()));
    await bounded(this.#round);
    for (const [p, revision] of [...this.#held]) {
      await this.#release(p, "shutdown");
      await bounded(this.#o.store.remove(`${PARTITION}${p}`, revision).catch(() => false));
    }
    const me = this.#seen.get(`${MEMBER}${this.#o.member}`);
    if (me) {
      await bounded(
        this.#o.store.remove(`${MEMBER}${this.#o.member}`, me.revision).catch(() => false),
      );
    }
    this.#o.log.info("partitions.left", { member: this.#o.member });
  }

  /** What this sidecar knows of the partitions. */
  stats(): OwnershipStats {
    return {
      member: this.#o.member,
      partitions: this.#o.partitions,
      owned: [...this.#held.keys()].sort((a, b) => a - b),
      members: this.#members,
      lease_ttl_ms: this.#o.store.ttlMs,
      acquired: this.#acquired,
      released: this.#released,
      errors: this.#errors,
    };
  }

  /** One heartbeat: renew, read the members and leases, hand over and take what the assignment says. */
  round(): Promise<void> {
    return this.#round = this.#round.then(async () => {
      if (this.#stopped) return;
      // when the round began: every lease it renews was written after this
      const began = this.#now();
      try {
        await this.#step(began);
      } catch (err) {
        this.#errors++;
        this.#o.telemetry.add("latentwatch.partition.errors", 1);
        this.#o.log.warn("partitions.round_failed", {
          member: this.#o.member,
          error: (err as Error).message,
          owned: this.#held.size,
        });
        await this.#fence();
      }
    });
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      await this.round();
      this.#schedule();
    }, this.#o.heartbeatMs);
  }

  /**
   * Without a successful round for most of a TTL, peers may soon count our
   * leases dead (a TTL after they saw them written, which was after the
   * round began): give the partitions up first, a heartbeat ahead.
   */
  async #fence(): Promise<void> {
    if (this.#held.size === 0 || this.#stopped) return;
    const since = this.#now() - this.#lastRenewed;
    if (since < this.#o.store.ttlMs - this.#o.heartbeatMs) return;
    for (const p of [...this.#held.keys()]) await this.#release(p, "unrenewed");
  }

  /**
   * Renew first: the heartbeat and the leases held need only the bucket's
   * stream leader. Then read the bucket and rebalance, which a meta-leader
   * election can stall (listing keys opens a consumer); a failed read is
   * counted but does not count against the leases just renewed.
   */
  async #step(began: number): Promise<void> {
    const { store, member, partitions } = this.#o;
    const memberValue = JSON.stringify({ partitions });
    const myRevision = await store.put(`${MEMBER}${member}`, memberValue);
    for (const [p, revision] of [...this.#held]) await this.#renew(p, revision);
    this.#lastRenewed = began;
    let entries: Map<string, LeaseEntry>;
    try {
      entries = await store.list("");
    } catch (err) {
      this.#errors++;
      this.#o.telemetry.add("latentwatch.partition.errors", 1);
      this.#o.log.warn("partitions.read_failed", {
        member,
        error: (err as Error).message,
        note: "leases renewed; rebalancing waits for the next round",
      });
      return;
    }
    const now = this.#now();
    entries.set(`${MEMBER}${member}`, { value: memberValue, revision: myRevision });
    const live = this.#liveEntries(entries, now);
    const members = [...live].filter(([k]) => k.startsWith(MEMBER)).map(([k, e]) => {
      this.#checkPeer(k.slice(MEMBER.length), e);
      return k.slice(MEMBER.length);
    }).sort();
    this.#members = members;
    const target = assignPartitions(members, partitions);
    for (let p = 0; p < partitions; p++) {
      await this.#settle(p, entries.get(`${PARTITION}${p}`), live.has(`${PARTITION}${p}`), target);
    }
    this.#o.telemetry.set("latentwatch.partitions.owned", this.#held.size);
  }

  /**
   * Renew the lease on `p` written at `revision`. When the key was written
   * since, it is still ours if it holds our name (a renewal whose answer a
   * broker failover lost); otherwise the partition is lost.
   */
  async #renew(p: number, revision: number): Promise<void> {
    const { store, member } = this.#o;
    const key = `${PARTITION}${p}`;
    let next = await store.update(key, member, revision);
    if (next === null) {
      const entry = await store.get(key);
      next = entry?.value === member ? await store.update(key, member, entry.revision) : null;
    }
    if (this.#held.get(p) !== revision) return; // fenced or released meanwhile
    if (next === null) await this.#release(p, "lost");
    else this.#held.set(p, next);
  }

  /** Entries whose revision changed within a TTL (by this sidecar's clock); forgets keys gone. */
  #liveEntries(entries: Map<string, LeaseEntry>, now: number): Map<string, LeaseEntry> {
    const live = new Map<string, LeaseEntry>();
    for (const [k, e] of entries) {
      const seen = this.#seen.get(k);
      if (!seen || seen.revision !== e.revision) {
        this.#seen.set(k, { revision: e.revision, at: now });
      } else if (now - seen.at >= this.#o.store.ttlMs) continue;
      live.set(k, e);
    }
    for (const k of [...this.#seen.keys()]) if (!entries.has(k)) this.#seen.delete(k);
    return live;
  }

  /** A peer configured with another partition count would split requests differently: say so once. */
  #checkPeer(peer: string, e: LeaseEntry): void {
    let theirs: number | undefined;
    try {
      theirs = JSON.parse(e.value).partitions;
    } catch { /* an unreadable member record: counted below */ }
    if (theirs === this.#o.partitions || this.#mismatched.has(peer)) return;
    this.#mismatched.add(peer);
    this.#o.telemetry.add("latentwatch.partition.errors", 1);
    this.#o.log.error("partitions.peer_mismatch", {
      member: this.#o.member,
      peer,
      expected_partitions: this.#o.partitions,
      found: theirs ?? e.value,
      note: "every sidecar sharing the bucket, and every tap, must use the same partition count",
    });
  }

  /** Bring partition `p` in line with the assignment. */
  async #settle(
    p: number,
    entry: LeaseEntry | undefined,
    live: boolean,
    target: (string | null)[],
  ): Promise<void> {
    // a round that was hung when the sidecar stopped takes nothing afterwards
    if (this.#stopped) return;
    const { store, member } = this.#o;
    const key = `${PARTITION}${p}`;
    const mine = this.#held.get(p);
    const want = target[p];
    if (mine !== undefined) {
      if (!entry || entry.value !== member) {
        // our lease expired on the server or a peer took it: we are not the owner any more
        await this.#release(p, "lost");
        return;
      }
      // renewed at the start of this round: hand it over if it belongs elsewhere now
      if (want !== member && want !== null) {
        await this.#release(p, "rebalance");
        await store.remove(key, entry.revision);
      }
      return;
    }
    if (entry && live && entry.value !== member) {
      this.#freeRounds.delete(p);
      return;
    }
    // free (absent, deleted, expired, or a lease of ours from before a restart)
    const rounds = (this.#freeRounds.get(p) ?? 0) + 1;
    this.#freeRounds.set(p, rounds);
    // a free partition assigned elsewhere is adopted when its owner-to-be does not take it
    if (want !== member && rounds < 3) return;
    if (entry && !(await store.remove(key, entry.revision))) return;
    const revision = await store.create(key, member);
    if (revision === null) return;
    this.#freeRounds.delete(p);
    this.#held.set(p, revision);
    this.#acquired++;
    this.#o.telemetry.add("latentwatch.partition.acquired", 1);
    this.#o.telemetry.set("latentwatch.partition.owned", 1, { partition: String(p) });
    this.#o.log.info("partition.acquired", {
      member,
      partition: p,
      ...(entry ? { previous: entry.value } : {}),
    });
    await this.#o.onAcquire(p);
  }

  async #release(p: number, reason: ReleaseReason): Promise<void> {
    if (!this.#held.delete(p)) return;
    this.#released++;
    this.#o.telemetry.add("latentwatch.partition.released", 1, { reason });
    this.#o.telemetry.set("latentwatch.partition.owned", 0, { partition: String(p) });
    const fields = { member: this.#o.member, partition: p, reason };
    if (reason === "rebalance" || reason === "shutdown") {
      this.#o.log.info("partition.released", fields);
    } else this.#o.log.warn("partition.released", fields);
    try {
      await this.#o.onRelease(p, reason);
    } catch (err) {
      this.#o.log.error("partition.release_failed", { ...fields, error: (err as Error).message });
    }
  }
}
