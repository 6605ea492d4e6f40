/**
 * One sidecar's member key in the lease bucket (`./partition_owner.ts`):
 * rewritten every heartbeat at the revision it last wrote, with its
 * partition count and its process's nonce, so a write by another process
 * under the same member name (a namesake) is seen, reported and sat out
 * until a TTL has passed without its writes; deleted on leave.
 *
 * @module
 */
import type { LeaseStore } from "../bus/leases.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import { removeOurs } from "./held_leases.ts";
import { MEMBER, memberValue, parseMember } from "./partition_view.ts";

/** What a {@linkcode MemberKey} needs. */
export interface MemberKeyOptions {
  store: LeaseStore;
  /** This sidecar's id among its peers. */
  member: string;
  /** This sidecar's partition count, written in the record. */
  partitions: number;
  /** This process's nonce, written in the record: our own writes are never a namesake's. */
  nonce: string;
  log: Logger;
  telemetry: Telemetry;
  /** Monotonic milliseconds. */
  now: () => number;
  /**
   * Another process's write to the key was seen (at every heartbeat that
   * sees one); `first` when no collision was on before. Nothing may be
   * owned under this name now.
   */
  onCollision: (first: boolean) => void;
}

/**
 * This sidecar's member key, and whether another process shares its name.
 *
 * @example
 * ```ts
 * import type { LeaseStore } from "../bus/leases.ts";
 * import { Logger } from "../shared/log.ts";
 * import { Telemetry } from "../shared/telemetry.ts";
 * declare const store: LeaseStore;
 * const key = new MemberKey({
 *   store,
 *   member: "sidecar-a",
 *   partitions: 16,
 *   nonce: "1f2e3d4c",
 *   log: new Logger(),
 *   telemetry: new Telemetry(),
 *   now: () => performance.now(),
 *   onCollision: () => console.error("another sidecar-a"),
 * });
 * await key.write(); // true: written, and no namesake writes it
 * key.value; // '{"partitions":16,"nonce":"1f2e3d4c"}'
 * await key.remove(); // on leave
 * ```
 */
export class MemberKey {
  readonly #o: MemberKeyOptions;
  /** The key, `member.<name>`. */
  readonly key: string;
  /** The record as written. */
  readonly value: string;
  #revision: number | null = null;
  #collision: string | null = null;
  /** When another process's write to our member key was last seen (`now()`). */
  #collisionSeenAt = -Infinity;

  constructor(opts: MemberKeyOptions) {
    this.#o = opts;
    this.key = `${MEMBER}${opts.member}`;
    this.value = memberValue({ partitions: opts.partitions, nonce: opts.nonce });
  }

  /** The revision we last wrote (null before the first write). */
  get revision(): number | null {
    return this.#revision;
  }

  /** Why nothing may be owned under this name now, or null: no namesake writes it. */
  get collision(): string | null {
    return this.#collision;
  }

  /**
   * Rewrite the key at the revision we last wrote. A conflict means
   * another process wrote it since: one with our name (unless it holds our
   * own nonce: an answer lost in a failover). Then nobody may own partitions
   * under this name: everything is given up, loudly, until a TTL has passed
   * without its writes. Returns false while another process shares the name.
   */
  async write(): Promise<boolean> {
    const { store } = this.#o;
    const { key, value } = this;
    let next = this.#revision === null
      ? await store.put(key, value)
      : await store.update(key, value, this.#revision);
    if (next === null) {
      const entry = await store.get(key);
      const nonce = entry ? parseMember(entry.value)?.nonce : undefined;
      if (entry && nonce !== this.#o.nonce) {
        this.#collided(nonce ?? entry.value);
        this.#revision = await store.put(key, value); // so the other one sees it too
        return false;
      }
      // ours (a lost answer), or gone (expired in an outage): write it again
      next = entry ? await store.update(key, value, entry.revision) : await store.put(key, value);
      if (next === null) next = await store.put(key, value);
    }
    this.#revision = next;
    if (this.#collision) {
      // our write went through, but the namesake may only be between two heartbeats: the
      // collision is over once a TTL has passed without its writes (else ownership would flap)
      if (this.#o.now() - this.#collisionSeenAt < store.ttlMs) return false;
      this.#o.log.info("partitions.member_collision_over", { member: this.#o.member });
      this.#collision = null;
    }
    return true;
  }

  /**
   * Delete the key (on leave), at the revision we last wrote or, when a
   * write in flight moved it on, at the bucket's if it is still this
   * process's record. False when there was nothing to delete or it could
   * not be: it then expires after a TTL.
   */
  async remove(): Promise<boolean> {
    if (this.#revision === null) return false;
    return await removeOurs(
      this.#o.store,
      this.key,
      this.#revision,
      (v) => parseMember(v)?.nonce === this.#o.nonce,
    );
  }

  #collided(theirs: string): void {
    this.#collisionSeenAt = this.#o.now();
    const first = !this.#collision;
    if (first) {
      this.#o.telemetry.add("latentwatch.partition.errors", 1);
      this.#o.log.error("partitions.member_collision", {
        member: this.#o.member,
        expected: `the member key written by this process only (${this.#o.nonce})`,
        found: `a write by another process (${theirs})`,
        note: "scale_out.member must be unique; this sidecar takes no partition meanwhile",
      });
    }
    this.#collision = `another sidecar uses the member name '${this.#o.member}' ` +
      "(scale_out.member must be unique)";
    this.#o.onCollision(first);
  }
}
