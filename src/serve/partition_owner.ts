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
 * sidecars never both own one (docs/scale-out.md). The leases held are
 * kept in `./held_leases.ts`, the member key in `./member_key.ts`.
 *
 * @module
 */
import { assignPartitions } from "../core/frame/assign.ts";
import type { LeaseEntry } from "../bus/leases.ts";
import { leaseHolder, leaseValue, LeaseView, PARTITION, Peers } from "./partition_view.ts";
import { HeldLeases, type HeldLeasesOptions, type ReleaseReason } from "./held_leases.ts";
import { MemberKey } from "./member_key.ts";
import { within } from "../shared/within.ts";

/** Why a sidecar gave a partition up (defined with the leases held, `./held_leases.ts`). */
export type { ReleaseReason };

/** Rounds a free partition waits for its assigned owner before a peer adopts it. */
const ADOPT_AFTER_ROUNDS = 3;

/** What a {@linkcode PartitionOwner} needs: the leases' (`./held_leases.ts`), and the rounds'. */
export interface PartitionOwnerOptions extends Omit<HeldLeasesOptions, "value"> {
  partitions: number;
  /** Milliseconds between rounds (renewals). */
  heartbeatMs: number;
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
  /** False while the leases are not being renewed, or another process uses this member name. */
  healthy: boolean;
}

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
 *   heartbeatMs: 1000,
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
  /** This process: its leases carry it, so a namesake's are never taken for ours. */
  readonly #nonce = crypto.randomUUID().slice(0, 8);
  readonly #me: string;
  readonly #leases: HeldLeases;
  readonly #memberKey: MemberKey;
  readonly #view: LeaseView;
  readonly #peers: Peers;
  /** Partition → the member it is assigned to, and the rounds it has been free while that one did not take it. */
  readonly #freeRounds = new Map<number, { want: string | null; rounds: number }>();
  #members: string[] = [];
  #lastRenewed = -Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #fenceTimer: ReturnType<typeof setInterval> | undefined;
  #round: Promise<void> = Promise.resolve();
  #stopped = false;
  #errors = 0;

  constructor(opts: PartitionOwnerOptions) {
    this.#o = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#me = leaseValue(opts.member, this.#nonce);
    this.#leases = new HeldLeases({ ...opts, value: this.#me });
    this.#memberKey = new MemberKey({
      ...opts,
      nonce: this.#nonce,
      now: this.#now,
      onCollision: (first) => {
        if (first) this.#errors++;
        this.#leases.releaseAll("lost");
      },
    });
    this.#view = new LeaseView(opts.store.ttlMs);
    this.#peers = new Peers({
      partitions: opts.partitions,
      onMismatch: (peer, found) => {
        this.#o.telemetry.add("latentwatch.partition.errors", 1);
        this.#o.log.error("partitions.peer_mismatch", {
          member: opts.member,
          peer,
          expected_partitions: opts.partitions,
          found,
          note: "left out of the assignment; every sidecar and every tap must use the same count",
        });
      },
    });
  }

  /** Partitions this sidecar owns now. */
  get owned(): ReadonlySet<number> {
    return new Set(this.#leases.partitions());
  }

  /**
   * Why this sidecar cannot keep its leases now (null when it can): rounds
   * failing for most of a TTL, or another process with the same member name.
   */
  get problem(): string | null {
    if (this.#memberKey.collision) return this.#memberKey.collision;
    const since = this.#now() - this.#lastRenewed;
    if (since >= this.#o.store.ttlMs - this.#o.heartbeatMs) {
      return `partition leases not renewed for ${
        Number.isFinite(since) ? `${Math.round(since)} ms` : "ever"
      } (lease bucket unreachable?)`;
    }
    return null;
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

  /** Leave: stop the rounds, give every partition up at once, delete the leases so peers take them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearInterval(this.#fenceTimer);
    const held = this.#leases.releaseAll("shutdown");
    // a round hung on a broker that went away must not hold the shutdown:
    // two heartbeats for all of it
    const deadline = this.#now() + 2 * this.#o.heartbeatMs;
    const bounded = <T>(p: Promise<T>) => within(p, Math.max(0, deadline - this.#now()));
    await bounded(this.#round);
    // left in place, peers would wait a TTL for them to expire
    await bounded(Promise.all([
      ...held.map(([p, revision]) => this.#leases.remove(p, revision)),
      this.#memberKey.remove(),
    ]));
    this.#o.log.info("partitions.left", { member: this.#o.member });
  }

  /** What this sidecar knows of the partitions. */
  stats(): OwnershipStats {
    return {
      member: this.#o.member,
      partitions: this.#o.partitions,
      owned: this.#leases.partitions().sort((a, b) => a - b),
      members: this.#members,
      lease_ttl_ms: this.#o.store.ttlMs,
      acquired: this.#leases.acquired,
      released: this.#leases.released,
      errors: this.#errors,
      healthy: this.problem === null,
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
          owned: this.#leases.size,
        });
        this.#fence();
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
   * round began): give every partition up at once, before they can.
   */
  #fence(): void {
    if (this.#leases.size === 0 || this.#stopped) return;
    const since = this.#now() - this.#lastRenewed;
    if (since < this.#o.store.ttlMs - this.#o.heartbeatMs) return;
    this.#leases.releaseAll("unrenewed");
  }

  /**
   * Renew first: the heartbeat and the leases held need only the bucket's
   * stream leader. Then read the bucket and rebalance, which a meta-leader
   * election can stall (the listing is a stream info request, answered by
   * the meta leader); a failed read is counted but does not count against
   * the leases just renewed.
   */
  async #step(began: number): Promise<void> {
    const { store, member, partitions } = this.#o;
    const memberKey = this.#memberKey;
    // all at once: a round under load must cost one round trip, not one per partition
    const [alone] = await Promise.all([
      memberKey.write(),
      ...this.#leases.entries().map(([p, revision]) => this.#leases.renew(p, revision)),
    ]);
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
    if (!alone) return;
    const now = this.#now();
    entries.set(memberKey.key, { value: memberKey.value, revision: memberKey.revision! });
    const live = this.#view.live(entries, now);
    this.#members = this.#peers.eligible(live, now);
    const target = assignPartitions(this.#members, partitions);
    // partitions are independent keys: settled at once, so taking a share costs one round trip
    await Promise.all(
      Array.from(
        { length: partitions },
        (_, p) =>
          this.#settle(p, entries.get(`${PARTITION}${p}`), live.has(`${PARTITION}${p}`), target),
      ),
    );
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
    const want = target[p];
    const now = this.#now();
    if (this.#leases.has(p)) {
      if (!entry || entry.value !== this.#me) {
        // our lease expired on the server or a peer took it: we are not the owner any more
        this.#leases.release(p, "lost");
        return;
      }
      // renewed at the start of this round: hand it over if it belongs elsewhere now
      if (want !== member && want !== null) {
        this.#leases.release(p, "rebalance");
        await store.remove(key, entry.revision);
      }
      return;
    }
    const freeSince = this.#view.free(p, !(entry && live), now);
    if (freeSince === null) {
      this.#freeRounds.delete(p);
      return;
    }
    // counted for the member it is assigned to now: rounds counted while the assignment still
    // named a member that left are not that member's successor's (it would be adopted too soon)
    const counted = this.#freeRounds.get(p);
    const rounds = counted?.want === want ? counted.rounds + 1 : 1;
    this.#freeRounds.set(p, { want, rounds });
    if (want !== member) {
      if (rounds < ADOPT_AFTER_ROUNDS) return;
      // its owner-to-be does not take it: adopt it, and pass that member over for a TTL
      if (want !== null) this.#peers.passOver(want, now + this.#o.store.ttlMs);
    }
    if (entry && !(await store.remove(key, entry.revision))) return;
    const revision = await store.create(key, this.#me);
    if (revision === null) return;
    if (this.#stopped) {
      // stopped while creating: let it go again at once
      await store.remove(key, revision).catch(() => false);
      return;
    }
    this.#freeRounds.delete(p);
    this.#view.free(p, false, now);
    await this.#leases.hold(p, revision, {
      // how long it had no owner, as far as this sidecar saw: frames sent then reached nobody
      free_for_ms: Math.round(now - freeSince),
      ...(entry ? { previous: leaseHolder(entry.value) } : {}),
      ...(want !== member ? { adopted_from: want ?? "none" } : {}),
    });
  }
}
