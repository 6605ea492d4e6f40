/**
 * What one sidecar sees of a lease bucket (`./partition_owner.ts`): which
 * entries are alive by its own clock (a revision unchanged for a TTL is
 * dead), which peers count as members (same partition count, taking what
 * they are given), and the member records and lease values sidecars write.
 *
 * @module
 */
import type { LeaseEntry } from "../bus/leases.ts";

/** Key prefixes in the (monitor-scoped) bucket. */
export const MEMBER = "member.";
export const PARTITION = "partition.";

/** What a member key holds: its partition count and the nonce of the process that wrote it. */
export interface MemberRecord {
  partitions: number;
  nonce: string;
}

/** The member record as written. */
export function memberValue(r: MemberRecord): string {
  return JSON.stringify(r);
}

/** A member record as read, or null when it is not one. */
export function parseMember(value: string): MemberRecord | null {
  try {
    const r = JSON.parse(value);
    return typeof r?.partitions === "number" && typeof r?.nonce === "string" ? r : null;
  } catch {
    return null;
  }
}

/**
 * A lease's value: the member's name and its process's nonce, so two
 * processes given the same name never take each other's leases for their own.
 */
export function leaseValue(member: string, nonce: string): string {
  return `${member}#${nonce}`;
}

/** The member named in a lease value. */
export function leaseHolder(value: string): string {
  const i = value.lastIndexOf("#");
  return i < 0 ? value : value.slice(0, i);
}

/**
 * Liveness by this sidecar's clock: an entry whose revision has not changed
 * for `ttlMs` since this sidecar first saw it is dead, whatever the server
 * still holds (the bucket's max age removes it later).
 *
 * @example
 * ```ts
 * const view = new LeaseView(10_000);
 * const entries = new Map([["member.a", { value: "{}", revision: 3 }]]);
 * view.live(entries, 0).has("member.a"); // true
 * view.live(entries, 10_000).has("member.a"); // false: revision 3 for 10 s
 * ```
 */
export class LeaseView {
  readonly #ttlMs: number;
  readonly #seen = new Map<string, { revision: number; at: number }>();
  /** Partition → when this sidecar first saw it without a live lease. */
  readonly #freeSince = new Map<number, number>();

  constructor(ttlMs: number) {
    this.#ttlMs = ttlMs;
  }

  /** The entries alive at `now`; keys no longer listed are forgotten. */
  live(entries: ReadonlyMap<string, LeaseEntry>, now: number): Map<string, LeaseEntry> {
    const live = new Map<string, LeaseEntry>();
    for (const [k, e] of entries) {
      const seen = this.#seen.get(k);
      if (!seen || seen.revision !== e.revision) {
        this.#seen.set(k, { revision: e.revision, at: now });
      } else if (now - seen.at >= this.#ttlMs) continue;
      live.set(k, e);
    }
    for (const k of [...this.#seen.keys()]) if (!entries.has(k)) this.#seen.delete(k);
    return live;
  }

  /** Note whether partition `p` is free at `now`; returns since when it has been (null: owned). */
  free(p: number, isFree: boolean, now: number): number | null {
    if (!isFree) {
      this.#freeSince.delete(p);
      return null;
    }
    if (!this.#freeSince.has(p)) this.#freeSince.set(p, now);
    return this.#freeSince.get(p)!;
  }
}

/** What {@linkcode Peers} needs. */
export interface PeersOptions {
  /** This sidecar's partition count. */
  partitions: number;
  /** Called once per peer found with another partition count (or no readable record). */
  onMismatch: (peer: string, found: number | string) => void;
}

/**
 * Which live members may be assigned partitions: those with our partition
 * count (another count splits requests differently) that are not passed
 * over (a member that did not take a partition assigned to it sits out for
 * a while, so partitions do not flap between it and its adopters).
 *
 * @example
 * ```ts
 * const peers = new Peers({ partitions: 16, onMismatch: (p) => console.error(p) });
 * const live = new Map([
 *   ["member.a", { value: '{"partitions":16,"nonce":"x"}', revision: 1 }],
 *   ["member.b", { value: '{"partitions":8,"nonce":"y"}', revision: 2 }],
 * ]);
 * peers.eligible(live, 0); // ["a"]: b counts 8 partitions
 * ```
 */
export class Peers {
  readonly #o: PeersOptions;
  readonly #mismatched = new Set<string>();
  readonly #passedOver = new Map<string, number>();

  constructor(opts: PeersOptions) {
    this.#o = opts;
  }

  /** Leave `member` out of the assignment until `until`. */
  passOver(member: string, until: number): void {
    this.#passedOver.set(member, until);
  }

  /** The eligible members among the live entries at `now`, sorted. */
  eligible(live: ReadonlyMap<string, LeaseEntry>, now: number): string[] {
    const members: string[] = [];
    for (const [k, e] of live) {
      if (!k.startsWith(MEMBER)) continue;
      const name = k.slice(MEMBER.length);
      const theirs = parseMember(e.value)?.partitions;
      if (theirs !== this.#o.partitions) {
        if (!this.#mismatched.has(name)) {
          this.#mismatched.add(name);
          this.#o.onMismatch(name, theirs ?? e.value);
        }
        continue;
      }
      if ((this.#passedOver.get(name) ?? -Infinity) > now) continue;
      members.push(name);
    }
    return members.sort();
  }
}
