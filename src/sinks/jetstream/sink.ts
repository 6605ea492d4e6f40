/**
 * The JetStream alert sink: every alert ends up in the alert stream exactly
 * once, even when NATS is down for a while or the sidecar restarts
 * (docs/alert-delivery.md, "Order of operations (write-ahead)").
 *
 * - At start the spool is opened, loading what the last run left there
 *   (resent by the replay loop), and the stream is created or checked
 *   (`bus.ensureStream`; deferred to the first publish while NATS is down).
 * - **Write-ahead.** {@linkcode JetStreamSink.persist} appends a batch of
 *   alerts to the on-disk {@linkcode Spool} first, in one write (with
 *   `fsync: batch` or `always`, one `fdatasync`), before any other sink sees
 *   them: an alert is durable (accepted) once its record is in the spool.
 * - **Publish.** Accepted alerts are then published from memory while NATS
 *   answers and the memory queue (`maxQueue`) has room, each with its stable
 *   id as `Nats-Msg-Id`, and the publish ack is awaited. When the stream
 *   acknowledges one, an ack record for its id is appended to the spool; a
 *   record leaves the spool only then. When NATS is down, memory is full or
 *   a publish fails, nothing more is written: the record already waits in
 *   the spool, and a replay loop delivers the spool, oldest first, with
 *   capped exponential backoff. Resends carry the same id, so the stream's
 *   dedup window keeps each alert once.
 * - **Refused by the spool** (full, write error): the alert is not accepted.
 *   It is published from memory only, and its {@linkcode Durability}
 *   resolves true once the stream acknowledged it (the caller hands it to
 *   the other sinks only then), false when it is dropped.
 * - When the stream itself is gone (a broker restarted without its store) it
 *   is created again.
 * - Drops: errors no retry can cure (`too_large`, `permission_denied`), a
 *   spool refusal while the alert cannot be published from memory either
 *   (`spool_full`, `spool_io_error`: the newest alert is the one dropped),
 *   `render_failed` and `shutdown`. Each is counted in `stats.dropped` and in
 *   `latentwatch.alerts.dropped{reason,sink}`, and logged as an error with
 *   the alert id. Nothing is dropped silently.
 * - At shutdown, {@linkcode JetStreamSink.drain} waits for memory (and for
 *   the spool while NATS answers); what is not acknowledged stays in the
 *   spool for the next run.
 *
 * Order in the stream follows submission while NATS answers; alerts that
 * went through the replay loop arrive later than newer ones that did not.
 *
 * With a `rendering`, the sink publishes that rendering of each alert (ECS,
 * CEF, an RFC 5424 frame, a Splunk HEC event: `src/sinks/renderings.ts`)
 * instead of the native record, with message id `<alert id>:<rendering id>`
 * so it does not collide with the native alert in the stream's dedup window.
 * The spool still holds native alerts; the rendering is made at each publish.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import type { Bus } from "../../bus/bus.ts";
import type { Durability, DurableSink } from "../sink.ts";
import { JetStreamAccounting } from "./accounting.ts";
import type { Spool, SpoolFsync } from "../spool.ts";
import { MemoryQueue } from "./memory_queue.ts";
import { type ResolvedJetStreamSinkOptions, resolveSinkOptions } from "./options.ts";
import { StreamPublisher } from "./publisher.ts";
import { checkStream, openSinkSpool } from "./start.ts";
import { type ReplayHost, replaySpool } from "./replay.ts";
import {
  type Item,
  type JetStreamSinkOptions,
  type JetStreamSinkStats,
  newSinkStats,
} from "./types.ts";

export {
  JetStreamSinkError,
  type JetStreamSinkOptions,
  type JetStreamSinkStats,
  type StreamRendering,
} from "./types.ts";

const encoder = new TextEncoder();

/**
 * At-least-once JetStream alert sink with an on-disk spool; dedup by alert id
 * makes it exactly-once in the stream (within the stream's duplicate window).
 *
 * @example
 * ```ts
 * import type { Alert } from "../../core/alert.ts";
 * declare const alert: Alert;
 * import type { Bus } from "../../bus/bus.ts";
 * declare const bus: Bus;
 * const sink = new JetStreamSink(bus, {
 *   subject: "latentwatch.alerts.demo",
 *   stream: { name: "LATENTWATCH_ALERTS", subjects: ["latentwatch.alerts.>"], duplicateWindowMs: 600_000 },
 *   spoolDir: "/var/lib/latentwatch/spool",
 * });
 * await sink.start(); // checks the stream, resends what the last run spooled
 * sink.submit(alert);
 * const lost = await sink.drain(10_000); // 0: delivered or spooled
 * await sink.close();
 * ```
 */
export class JetStreamSink implements DurableSink {
  readonly name: string;
  readonly #bus: Bus;
  readonly #o: ResolvedJetStreamSinkOptions;
  #spool: Spool | null = null;
  /**
   * Spooled ids being published: by the replay loop, or from memory (an
   * alert written ahead). The replay loop skips them.
   */
  readonly #replaying = new Set<string>();
  #closed = false;
  #stopping = false;
  #replayLoop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  readonly #publisher: StreamPublisher;
  readonly #acct: JetStreamAccounting;
  readonly #memory: MemoryQueue;
  readonly #stats: JetStreamSinkStats = newSinkStats();

  constructor(bus: Bus, opts: JetStreamSinkOptions) {
    this.#bus = bus;
    this.#o = resolveSinkOptions(opts);
    this.name = opts.name ?? "jetstream";
    this.#publisher = new StreamPublisher(bus, this.#o);
    this.#acct = new JetStreamAccounting(this.name, this.#stats, this.#o);
    this.#memory = new MemoryQueue({
      bus,
      publisher: this.#publisher,
      acct: this.#acct,
      o: this.#o,
      stats: this.#stats,
      replaying: this.#replaying,
      spool: () => this.#spool,
      stopping: () => this.#stopping,
      gauge: () => this.#gauge(),
      wake: () => this.#wake?.(),
    });
  }

  /** Live counters. */
  get stats(): JetStreamSinkStats {
    const s = this.#stats;
    s.spoolPending = this.#spool?.pending ?? 0;
    s.queued = this.#memory.volatile + s.spoolPending;
    return s;
  }

  /** The fsync setting of the open spool (null before start, or without a spool). */
  get spoolFsync(): SpoolFsync | null {
    return this.#spool?.fsync ?? null;
  }

  /**
   * Open the spool (loading what a previous run left), create or check the
   * stream, and start the replay loop. When NATS does not answer yet the
   * stream check is left to the first publish (a missing stream is created
   * then); a stream check that NATS answers with an error throws.
   */
  async start(): Promise<void> {
    this.#spool = openSinkSpool(this.#o, this.#stats);
    await checkStream(this.#bus, this.#o);
    if (this.#spool) this.#replayLoop ??= replaySpool(this.#replayHost(this.#spool));
  }

  /**
   * Queue `alert` (see {@linkcode JetStreamSink.persist}). Returns false when
   * it was dropped (and counted, and logged): spool full while NATS is down,
   * too large, or the sink closed. Never blocks.
   */
  submit(alert: Alert): boolean {
    // a drop is decided before persist returns (full spool with NATS down, too large, closed)
    return this.persist([alert])[0] === true || !this.#droppedNow.has(alert.id);
  }

  /**
   * Make `alerts` durable, then deliver them: with a spool, all of them are
   * appended to it first (write-ahead: one write, and with `fsync: batch` one
   * `fdatasync`, for the whole list), then published from memory while NATS
   * answers and the memory queue has room; the spool record is acknowledged
   * once the stream acknowledged the alert. Whatever memory cannot take now,
   * or a publish failed for, waits in the spool for the replay loop.
   *
   * An alert the spool refuses (full, write error) is published from memory
   * only: its result resolves true once the stream acknowledged it, false
   * when it was dropped (counted and logged). Callers hand an alert to other
   * sinks only once it is durable, so a crash at any moment loses no alert
   * any sink has seen. Never blocks.
   *
   * @example
   * ```ts
   * import type { Alert } from "../../core/alert.ts";
   * declare const alert: Alert;
   * import type { AlertSink } from "../../sinks/sink.ts";
   * declare const sink: JetStreamSink, otherSink: AlertSink;
   * const [d] = sink.persist([alert]);
   * if (d === true || await d) otherSink.submit(alert);
   * ```
   */
  persist(alerts: readonly Alert[]): Durability[] {
    this.#droppedNow.clear();
    const out: Durability[] = new Array(alerts.length);
    const items: (Item | null)[] = alerts.map((alert, i) => {
      if (this.#closed || (this.#stopping && !this.#spool)) {
        this.#acct.drop(alert, "shutdown");
        out[i] = this.#refused(alert);
        return null;
      }
      const data = encoder.encode(JSON.stringify(alert));
      let payload: Uint8Array = data;
      if (this.#o.rendering) {
        try {
          payload = this.#o.rendering.render(alert);
        } catch (err) {
          this.#acct.drop(alert, "render_failed", (err as Error)?.message ?? String(err));
          out[i] = this.#refused(alert);
          return null;
        }
      }
      if (payload.length > this.#bus.maxPayload) {
        this.#acct.drop(
          alert,
          "too_large",
          `expected at most ${this.#bus.maxPayload} bytes, found ${payload.length}`,
        );
        out[i] = this.#refused(alert);
        return null;
      }
      return { alert, data, payload, firstAttemptMs: 0, backed: false };
    });
    const todo = items.filter((it): it is Item => it !== null);
    const spooled = this.#spool && todo.length > 0
      ? this.#spool.appendMany(todo.map((it) => ({
        id: it.alert.id,
        data: it.data,
        firstAttemptMs: 0,
      })))
      : null;
    let k = 0;
    let woke = false;
    const unsynced: string[] = [];
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (!item) continue;
      const r = spooled?.[k++];
      if (r?.ok) {
        out[i] = true;
        if (r.already) continue; // waiting already: in memory or for the replay loop
        if (r.unsynced !== undefined) unsynced.push(item.alert.id);
        this.#stats.spooled++;
        item.backed = true;
        if (this.#memory.hasRoom()) this.#memory.pushBacked(item);
        else woke = true; // the replay loop delivers it
        continue;
      }
      out[i] = this.#volatileItem(item, r && !r.ok ? r : null);
    }
    if (unsynced.length > 0) {
      this.#acct.unsynced(
        unsynced,
        spooled!.find((r) => r.ok && r.unsynced),
      );
    }
    if (woke) this.#wake?.();
    this.#gauge();
    // publishing starts after the caller's synchronous work (its own
    // bookkeeping write right after this one, in the pipeline's case)
    queueMicrotask(() => this.#memory.pump());
    return out;
  }

  /** Ids dropped by the current {@linkcode persist} call (for `submit`'s answer). */
  readonly #droppedNow = new Set<string>();

  #refused(alert: Alert): Durability {
    this.#droppedNow.add(alert.id);
    return Promise.resolve(false);
  }

  /**
   * An alert not written ahead (no spool, or the spool refused it): queued
   * in memory when NATS answers and there is room, otherwise dropped
   * (counted and logged, with the spool's reason when it refused).
   */
  #volatileItem(
    item: Item,
    refusal: { reason: string; error: string } | null,
  ): Durability {
    if (!this.#memory.hasRoomForVolatile()) {
      const reason = refusal?.reason ?? (this.#stopping ? "shutdown" : "queue_full");
      this.#acct.drop(item.alert, reason, refusal?.error);
      return this.#refused(item.alert);
    }
    return this.#memory.pushVolatile(item);
  }

  /**
   * Wait up to `timeoutMs` for the memory queue to be delivered, and for the
   * spool too while NATS answers. Alerts written ahead are in the spool
   * already (resent by the next run); the others still in memory go to the
   * spool now, or without a spool are dropped (reason `shutdown`). Resolves
   * with the number of alerts lost: dropped here, not spooled.
   */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + Math.max(0, timeoutMs);
    const settled = () =>
      this.#memory.size === 0 &&
      (!this.#spool || this.#spool.pending === 0 || !this.#bus.connected);
    while (!settled() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.#stopping = true;
    const { left, lost } = this.#memory.release();
    this.#gauge();
    if (left > 0 || (this.#spool?.pending ?? 0) > 0) {
      this.#o.log?.[lost > 0 ? "error" : "warn"]("alert.undelivered_at_shutdown", {
        sink: this.name,
        lost,
        spooled: this.#spool?.pending ?? 0,
        waited_ms: timeoutMs,
      });
    }
    return lost;
  }

  /** Stop the replay loop and close the spool (what waits there stays on disk). The bus stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopping = true;
    this.#wake?.();
    // a replay round may wait for acks (up to the bus's ack timeout); its
    // unacknowledged records simply stay in the spool for the next run
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#replayLoop,
      new Promise((r) => timer = setTimeout(r, 200)),
    ]);
    clearTimeout(timer);
    this.#spool?.close();
  }

  #gauge(): void {
    this.#o.telemetry?.set(
      "latentwatch.alert_queue.depth",
      this.#memory.volatile + (this.#spool?.pending ?? 0),
      { sink: this.name },
    );
  }

  /** The sink as the replay loop sees it (`./replay.ts`). */
  #replayHost(spool: Spool): ReplayHost {
    // deno-lint-ignore no-this-alias
    const sink = this;
    return {
      name: this.name,
      spool,
      publisher: this.#publisher,
      o: this.#o,
      stats: this.#stats,
      replaying: this.#replaying,
      get closed() {
        return sink.#closed;
      },
      get stopping() {
        return sink.#stopping;
      },
      get connected() {
        return sink.#bus.connected;
      },
      sleep: (ms) => this.#sleep(ms),
      delivered: (alert, seq, duplicate) => this.#acct.delivered(alert, seq, duplicate),
      retried: (id, error, ms) => this.#acct.retried(id, error, ms),
      drop: (alert, reason, error) => this.#acct.drop(alert, reason, error),
      gauge: () => this.#gauge(),
    };
  }

  /** Sleep `ms`, or less when woken (new spool records, close). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
  }
}
