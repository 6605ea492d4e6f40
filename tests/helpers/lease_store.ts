/**
 * Test double for a broker whose lease calls are answered late: the real
 * lease store, each call first waiting on what `before(op, key)` returns
 * (a promise), or going at once when it returns nothing. The partition
 * tests use it for a loaded broker (every call some milliseconds late) and
 * for one delete held until the test lets it go.
 *
 * @module
 */
import type { LeaseStore } from "../../src/bus/leases.ts";

/** A lease store call, by name. */
export type LeaseOp = "list" | "get" | "create" | "update" | "put" | "remove";

/**
 * `real`, each call made once `before(op, key)` has settled (`key` is the
 * prefix for `list`).
 *
 * @example
 * ```ts
 * import type { LeaseStore } from "../../src/bus/leases.ts";
 * import { delayedStore } from "./lease_store.ts";
 * declare const real: LeaseStore;
 * const slow = delayedStore(real, () => new Promise((r) => setTimeout(r, 250)));
 * ```
 */
export function delayedStore(
  real: LeaseStore,
  before: (op: LeaseOp, key: string) => Promise<unknown> | undefined,
): LeaseStore {
  const call = async <T>(op: LeaseOp, key: string, f: () => Promise<T>): Promise<T> => {
    const wait = before(op, key);
    if (wait) await wait;
    return f();
  };
  return {
    ttlMs: real.ttlMs,
    replicas: real.replicas,
    list: (p) => call("list", p, () => real.list(p)),
    get: (k) => call("get", k, () => real.get(k)),
    create: (k, v) => call("create", k, () => real.create(k, v)),
    update: (k, v, r) => call("update", k, () => real.update(k, v, r)),
    put: (k, v) => call("put", k, () => real.put(k, v)),
    remove: (k, r) => call("remove", k, () => real.remove(k, r)),
  };
}
