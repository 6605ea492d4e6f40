/**
 * Which sidecar should own each partition of a model's frames, computed by
 * every sidecar alike from the same list of live members (no coordinator):
 * balanced (owners' counts differ by at most one) and stable (a member that
 * joins or leaves moves few partitions), by a capacity-bounded rendezvous
 * hash. Pure: the leases that enforce it are in `src/serve/partition_owner.ts`.
 *
 * @module
 */

/** FNV-1a (32-bit) of a string's UTF-16 code units, mixed (murmur3 finaliser) so nearby inputs spread. */
function score(member: string, partition: number): number {
  let h = 0x811c9dc5;
  const key = `${member}\u0000${partition}`;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The owner each partition should have: `result[p]` is a member id, or
 * null when there are no members. Members are ids (order and duplicates do
 * not matter). Each member gets `floor(partitions / n)` or one more; each
 * partition goes to the member ranking it highest that still has room,
 * partitions taken in a fixed order, so every sidecar computes the same
 * answer from the same set.
 *
 * @example
 * ```ts
 * const owners = assignPartitions(["a", "b", "c"], 16);
 * owners.length; // 16
 * owners.filter((m) => m === "a").length; // 5 or 6
 * ```
 */
export function assignPartitions(members: Iterable<string>, partitions: number): (string | null)[] {
  if (!Number.isSafeInteger(partitions) || partitions < 1) {
    throw new RangeError(`partitions: expected a positive integer, found ${partitions}`);
  }
  const ids = [...new Set(members)].sort();
  const owners: (string | null)[] = new Array(partitions).fill(null);
  if (ids.length === 0) return owners;
  const base = Math.floor(partitions / ids.length);
  let extra = partitions % ids.length;
  const load = new Map(ids.map((id) => [id, 0]));
  // the members' rankings of each partition, best first
  const ranked = owners.map((_, p) =>
    ids.map((id) => ({ id, s: score(id, p) })).sort((x, y) => y.s - x.s || (x.id < y.id ? -1 : 1))
  );
  // partitions whose favourite member is clearest go first, so contested
  // ones are settled by capacity rather than by index
  const order = ranked.map((r, p) => ({ p, margin: r.length > 1 ? r[0].s - r[1].s : 0 }))
    .sort((x, y) => y.margin - x.margin || x.p - y.p);
  for (const { p } of order) {
    for (const { id } of ranked[p]) {
      const n = load.get(id)!;
      if (n < base || (n === base && extra > 0)) {
        if (n === base) extra--;
        load.set(id, n + 1);
        owners[p] = id;
        break;
      }
    }
  }
  return owners;
}
