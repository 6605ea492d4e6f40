/**
 * The memory queue of the JetStream sink (`./sink.ts`): alerts published
 * from memory while NATS answers, up to `maxInFlight` awaiting their ack at
 * once and `maxQueue` in memory in all. An alert written ahead to the spool
 * (`backed`) is only sped up here: its spool record is acknowledged once
 * the stream has it, and a failed publish leaves it to the replay loop
 * (`./replay.ts`). An alert not written ahead (volatile) is told once it is
 * durable: published, or written to the spool after a failed publish (or
 * retried from memory with backoff when there is no spool). When NATS goes
 * away the queue goes to the spool; at shutdown what is left is let go of
 * ({@linkcode MemoryQueue.release}).
 *
 * @module
 */
import type { Bus } from "../../bus/bus.ts";
import type { Durability } from "../sink.ts";
import type { Spool } from "../spool.ts";
import { Backoff } from "../../shared/backoff.ts";
import type { JetStreamAccounting } from "./accounting.ts";
import type { ResolvedJetStreamSinkOptions } from "./options.ts";
import type { StreamPublisher } from "./publisher.ts";
import type { Item, JetStreamSinkStats } from "./types.ts";

/** What the memory queue reads and calls on its sink. */
export interface MemoryQueueDeps {
  readonly bus: Bus;
  readonly publisher: StreamPublisher;
  readonly acct: JetStreamAccounting;
  readonly o: Pick<
    ResolvedJetStreamSinkOptions,
    "maxQueue" | "maxInFlight" | "initialBackoffMs" | "maxBackoffMs"
  >;
  readonly stats: JetStreamSinkStats;
  /** Spooled ids being published (from memory, or by the replay loop, which skips them). */
  readonly replaying: Set<string>;
  /** The sink's spool: null before start, or without one. */
  spool(): Spool | null;
  /** Is the sink shutting down? */
  stopping(): boolean;
  /** Report the queue depth. */
  gauge(): void;
  /** Wake the replay loop (new spool records). */
  wake(): void;
}

/**
 * The alerts a JetStream sink holds in memory, and their publishing.
 *
 * @example
 * ```ts
 * import type { Item } from "./types.ts";
 * declare const deps: MemoryQueueDeps, item: Item;
 * const memory = new MemoryQueue(deps);
 * const durable = memory.hasRoomForVolatile() ? memory.pushVolatile(item) : false;
 * memory.pump(); // publishes up to maxInFlight at once
 * await durable; // true once the stream (or the spool) has it
 * ```
 */
export class MemoryQueue {
  readonly #d: MemoryQueueDeps;
  #queue: Item[] = [];
  #inFlight = new Set<Item>();
  /** Items in memory that are not in the spool (not written ahead). */
  #volatile = 0;

  constructor(deps: MemoryQueueDeps) {
    this.#d = deps;
  }

  get #spool(): Spool | null {
    return this.#d.spool();
  }

  get #stopping(): boolean {
    return this.#d.stopping();
  }

  /** Items queued or awaiting their ack. */
  get size(): number {
    return this.#queue.length + this.#inFlight.size;
  }

  /** Items in memory that are not in the spool (not written ahead). */
  get volatile(): number {
    return this.#volatile;
  }

  /** Can an alert written ahead be published from memory now? */
  hasRoom(): boolean {
    return !this.#stopping && this.#d.bus.connected &&
      this.#queue.length + this.#inFlight.size < this.#d.o.maxQueue;
  }

  /** Can an alert not written ahead be held in memory now? */
  hasRoomForVolatile(): boolean {
    return !this.#stopping && this.#queue.length + this.#inFlight.size < this.#d.o.maxQueue &&
      (this.#d.bus.connected || !this.#spool);
  }

  /** Queue an alert written ahead: the replay loop skips it while it is here. */
  pushBacked(item: Item): void {
    this.#d.replaying.add(item.alert.id);
    this.#queue.push(item);
  }

  /** Queue an alert not written ahead; resolves true once it is durable, false when dropped. */
  pushVolatile(item: Item): Durability {
    this.#volatile++;
    const settled = new Promise<boolean>((resolve) => item.settle = resolve);
    this.#queue.push(item);
    return settled;
  }

  /**
   * At shutdown, let go of every item in memory: those written ahead are in
   * the spool already; the others go to the spool now, or without a spool
   * are dropped (reason `shutdown`). Returns how many items there were and
   * how many of them are lost (dropped, not spooled).
   */
  release(): { left: number; lost: number } {
    const left = [...this.#queue.splice(0), ...this.#inFlight];
    this.#inFlight.clear();
    let lost = 0;
    for (const item of left) {
      this.#d.replaying.delete(item.alert.id);
      if (item.backed) continue; // on disk already
      if (this.#spool && this.#toSpool(item)) continue;
      if (!this.#spool) this.#d.acct.drop(item.alert, "shutdown");
      this.#settle(item, false);
      lost++;
    }
    return { left: left.length, lost };
  }

  /** A volatile item leaves memory: durable (in the stream or the spool) or dropped. */
  #settle(item: Item, durable: boolean): void {
    if (!item.settle) return;
    const settle = item.settle;
    item.settle = undefined;
    this.#volatile--;
    settle(durable);
  }

  /** Write `item` to the spool; on refusal (full, I/O error) drop it, counted and logged. */
  #toSpool(item: Item): boolean {
    const r = this.#spool!.append({
      id: item.alert.id,
      data: item.data,
      firstAttemptMs: item.firstAttemptMs,
    });
    if (!r.ok) {
      // documented policy: the newest alert is the one dropped (see docs/alert-delivery.md)
      this.#d.acct.drop(item.alert, r.reason, r.error);
      return false;
    }
    if (!r.already) this.#d.stats.spooled++;
    if (r.unsynced !== undefined) this.#d.acct.unsynced([item.alert.id], r);
    item.backed = true;
    this.#settle(item, true);
    this.#d.gauge();
    this.#d.wake();
    return true;
  }

  /** Publish queued items, up to `maxInFlight` at once; to the spool when NATS is down. */
  pump(): void {
    while (!this.#stopping && this.#inFlight.size < this.#d.o.maxInFlight && this.#queue.length) {
      if (this.#spool && !this.#d.bus.connected) {
        // no point waiting for acks that cannot come: the queue goes to disk
        // (what was written ahead is there already)
        for (const item of this.#queue.splice(0)) {
          this.#d.replaying.delete(item.alert.id);
          if (!item.backed && !this.#toSpool(item)) this.#settle(item, false);
        }
        this.#d.gauge();
        this.#d.wake();
        return;
      }
      const item = this.#queue.shift()!;
      this.#inFlight.add(item);
      this.#send(item).finally(() => {
        this.#inFlight.delete(item);
        if (item.backed) this.#d.replaying.delete(item.alert.id);
        this.#d.gauge();
        this.pump();
      });
    }
  }

  async #send(item: Item): Promise<void> {
    const { acct } = this.#d;
    const backoff = new Backoff(this.#d.o.initialBackoffMs, this.#d.o.maxBackoffMs);
    for (;;) {
      if (!item.firstAttemptMs) {
        item.firstAttemptMs = Date.now();
        if (item.backed) this.#spool?.markAttempt(item.alert.id, item.firstAttemptMs);
      }
      const out = await this.#d.publisher.publish(item.alert.id, item.payload, item.alert);
      if (!this.#inFlight.has(item)) {
        // drain() let go of it while the publish was out (it is in the spool,
        // or dropped); a late ack means the stream has it, so the spool record can go
        if (out.kind === "ok" && this.#spool?.ack(item.alert.id)) {
          acct.delivered(item.alert, out.seq, out.duplicate);
        }
        return;
      }
      if (out.kind === "ok") {
        if (item.backed) this.#spool?.ack(item.alert.id);
        this.#settle(item, true);
        return acct.delivered(item.alert, out.seq, out.duplicate);
      }
      if (out.kind === "permanent") {
        if (item.backed) this.#spool?.ack(item.alert.id); // given up on: it must not come back
        this.#settle(item, false);
        return acct.drop(item.alert, out.reason, out.error);
      }
      acct.retried(item.alert.id, out.error, backoff.delay);
      // with a spool, a failed publish leaves the alert to the replay loop
      // (written ahead, or written now): the memory queue stays free for
      // alerts that can go now, and the loop retries it with backoff
      if (item.backed) return void this.#d.wake();
      if (this.#spool && this.#toSpool(item)) return;
      await new Promise((r) => setTimeout(r, backoff.delay));
      backoff.grow();
      if (this.#stopping) return; // counted by drain()
    }
  }
}
