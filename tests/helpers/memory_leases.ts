/**
 * Test double for a lease bucket without a broker: the compare-and-set
 * writes of a JetStream KV bucket over a map in memory, every write a new
 * revision of one sequence (as a stream's). Entries never expire; a test
 * that needs an entry gone deletes it. Unit tests of the partition code use
 * it where the order of writes, not the broker, is what they check.
 *
 * @module
 */
import type { LeaseEntry, LeaseStore } from "../../src/bus/leases.ts";

/**
 * An empty lease store in memory, its entries living `ttlMs` by the
 * callers' clocks (the store itself never drops one).
 *
 * @example
 * ```ts
 * import { memoryLeases } from "./memory_leases.ts";
 * const store = memoryLeases();
 * await store.create("partition.0", "a#1"); // 1
 * await store.create("partition.0", "b#2"); // null: it has a live entry
 * await store.update("partition.0", "a#1", 1); // 2
 * ```
 */
export function memoryLeases(ttlMs = 10_000): LeaseStore {
  const entries = new Map<string, LeaseEntry>();
  let sequence = 0;
  const write = (key: string, value: string): number => {
    entries.set(key, { value, revision: ++sequence });
    return sequence;
  };
  return {
    ttlMs,
    replicas: 1,
    list: (prefix) =>
      Promise.resolve(
        new Map([...entries].filter(([k]) => k.startsWith(prefix)).map(([k, e]) => [k, { ...e }])),
      ),
    get: (key) => {
      const e = entries.get(key);
      return Promise.resolve(e ? { ...e } : null);
    },
    create: (key, value) => Promise.resolve(entries.has(key) ? null : write(key, value)),
    update: (key, value, revision) =>
      Promise.resolve(entries.get(key)?.revision === revision ? write(key, value) : null),
    put: (key, value) => Promise.resolve(write(key, value)),
    remove: (key, revision) => {
      if (entries.get(key)?.revision !== revision) return Promise.resolve(false);
      entries.delete(key);
      sequence++; // a delete is a write of its own (a marker), as in a stream
      return Promise.resolve(true);
    },
  };
}
