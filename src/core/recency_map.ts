/**
 * A map that keeps its keys in the order they were last used, least recent
 * first: the per-request state of the pipeline, bounded by count (the least
 * recent goes first) and by idle time (swept from the least recent). Pure.
 *
 * Why not a `Map` re-inserted on every use (`delete` then `set`, which moves
 * the key to the end): each delete leaves a spare slot behind, and once they
 * run out V8 rebuilds the map's table, allocating a new one. A map that lives
 * long sits in the old generation, and so does every table it rebuilds: with
 * 64 live requests used once per frame, about 56 bytes per frame went
 * straight into the old generation, three such maps on the frame path, and a
 * full collection came every few seconds at half load. Here a use moves one
 * entry in a linked list, which allocates nothing.
 *
 * @module
 */

interface Entry<K, V> {
  readonly key: K;
  value: V;
  /** Towards the least recent. */
  prev: Entry<K, V> | null;
  /** Towards the most recent; kept when the entry is removed, so an iteration under way goes on. */
  next: Entry<K, V> | null;
  removed: boolean;
}

/**
 * Keys in order of last use. `get` and `has` do not count as a use; `set`
 * and `use` do. Deleting entries while iterating is safe (the iteration goes
 * on with the next entry still present); adding or moving one (`set`, `use`)
 * while iterating is not supported.
 *
 * @example
 * ```ts
 * import { RecencyMap } from "./recency_map.ts";
 * const m = new RecencyMap<string, number>();
 * m.set("a", 1).set("b", 2);
 * m.use("a"); // 1, and "a" is now the most recent
 * m.oldest(); // "b"
 * [...m.keys()]; // ["b", "a"]
 * ```
 */
export class RecencyMap<K, V> implements Iterable<[K, V]> {
  readonly #entries = new Map<K, Entry<K, V>>();
  /** Least recent. */
  #head: Entry<K, V> | null = null;
  /** Most recent. */
  #tail: Entry<K, V> | null = null;

  /** Number of keys. */
  get size(): number {
    return this.#entries.size;
  }

  /** The value of `key`, without counting as a use. */
  get(key: K): V | undefined {
    return this.#entries.get(key)?.value;
  }

  /** Whether `key` is present. */
  has(key: K): boolean {
    return this.#entries.has(key);
  }

  /** The value of `key`, made the most recent; `undefined` (and nothing changed) when absent. */
  use(key: K): V | undefined {
    const e = this.#entries.get(key);
    if (e === undefined) return undefined;
    this.#toTail(e);
    return e.value;
  }

  /** Set `key` to `value` and make it the most recent, whether new or present. */
  set(key: K, value: V): this {
    const e = this.#entries.get(key);
    if (e !== undefined) {
      e.value = value;
      this.#toTail(e);
      return this;
    }
    const added: Entry<K, V> = { key, value, prev: this.#tail, next: null, removed: false };
    if (this.#tail === null) this.#head = added;
    else this.#tail.next = added;
    this.#tail = added;
    this.#entries.set(key, added);
    return this;
  }

  /** Remove `key`; false when it was absent. */
  delete(key: K): boolean {
    const e = this.#entries.get(key);
    if (e === undefined) return false;
    this.#entries.delete(key);
    this.#unlink(e);
    e.removed = true;
    return true;
  }

  /** The least recently used key, or `undefined` when empty. */
  oldest(): K | undefined {
    return this.#head?.key;
  }

  /** `[key, value]` pairs, least recent first. */
  *entries(): IterableIterator<[K, V]> {
    for (let e = this.#head; e !== null; e = e.next) {
      if (!e.removed) yield [e.key, e.value];
    }
  }

  /** Keys, least recent first. */
  *keys(): IterableIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  /** Values, least recent first. */
  *values(): IterableIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  #toTail(e: Entry<K, V>): void {
    if (this.#tail === e) return;
    this.#unlink(e);
    e.prev = this.#tail;
    e.next = null;
    if (this.#tail === null) this.#head = e;
    else this.#tail.next = e;
    this.#tail = e;
  }

  /** Take `e` out of the list; its `next` stays, for an iteration standing on it. */
  #unlink(e: Entry<K, V>): void {
    if (e.prev === null) this.#head = e.next;
    else e.prev.next = e.next;
    if (e.next === null) this.#tail = e.prev;
    else e.next.prev = e.prev;
    e.prev = null;
  }
}
