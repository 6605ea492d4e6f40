/**
 * Probes for failover runs against a {@linkcode ../bus/nats_cluster.ts}
 * cluster: a publisher that retries each message (same `Nats-Msg-Id`) until
 * it is acked and records when the acks came, and a reader of the message
 * ids a stream holds, to check "every acked message, none twice".
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { type JetStreamClient, jetstreamManager } from "@nats-io/jetstream";

/** What {@linkcode publishDurably} did. */
export interface DurableRun {
  /** Message ids that got an ack, in order. */
  acked: string[];
  /** When each ack came (ms since the epoch), parallel to `acked`. */
  ackTimes: number[];
  /** When the attempt that got each ack was sent, parallel to `acked`. */
  sentTimes: number[];
  /** Attempts that failed (timeout, no responders, disconnect) and were retried. */
  failures: number;
  /** The first error seen, for the report. */
  firstError?: string;
  /**
   * The longest time without an ack after `t` (e.g. a kill): from `t` (or
   * the ack before) to the next ack; the whole remaining run when none came.
   */
  longestGapAfter(t: number): number;
}

/** A running {@linkcode startDurablePublisher}; its fields fill in as acks come. */
export interface DurablePublisher extends DurableRun {
  /**
   * When the first ack for a publish sent after `t` came (an ack in flight
   * at `t` does not count); rejects after `timeoutMs` naming the failed
   * attempts and the first error.
   */
  ackAfter(t: number, timeoutMs?: number): Promise<number>;
  /** Finish the message in flight (or give it up) and stop. */
  stop(): Promise<DurableRun>;
}

/**
 * Publish `<prefix>-0`, `<prefix>-1`, … to `subject`, one at a time, each
 * retried with the same message id until acked, until {@linkcode
 * DurablePublisher.stop}; `acked` lists only ids that got an ack.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 * import { jetstream } from "@nats-io/jetstream";
 *
 * const nc = await connect({ servers: ["nats://127.0.0.1:4222"] });
 * const pub = startDurablePublisher(jetstream(nc), "dur.x");
 * const killedAt = Date.now(); // ... kill a node here ...
 * await pub.ackAfter(killedAt, 30_000);
 * const res = await pub.stop();
 * console.log(res.acked.length, res.longestGapAfter(killedAt));
 * ```
 */
export function startDurablePublisher(
  js: JetStreamClient,
  subject: string,
  opts: { prefix?: string; timeoutMs?: number; retryDelayMs?: number } = {},
): DurablePublisher {
  const prefix = opts.prefix ?? "m";
  const ac = new AbortController();
  const started = Date.now();
  let ended = 0;
  const run: DurablePublisher = {
    acked: [],
    ackTimes: [],
    sentTimes: [],
    failures: 0,
    firstError: undefined,
    longestGapAfter(t: number): number {
      let longest = 0;
      let prev = Math.max(t, started);
      for (const at of run.ackTimes) {
        if (at < t) continue;
        longest = Math.max(longest, at - prev);
        prev = at;
      }
      return Math.max(longest, (ended || Date.now()) - prev);
    },
    async ackAfter(t: number, timeoutMs = 30_000): Promise<number> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = run.sentTimes.findIndex((s) => s > t);
        if (i >= 0) return run.ackTimes[i];
        if (Date.now() > deadline || ac.signal.aborted) {
          throw new Error(
            `no ack within ${timeoutMs} ms after ${new Date(t).toISOString()}: ` +
              `${run.failures} failed attempts, first error: ${run.firstError ?? "none"}`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop(): Promise<DurableRun> {
      ac.abort();
      await loop;
      return run;
    },
  };
  const loop = (async () => {
    for (let i = 0; !ac.signal.aborted; i++) {
      const id = `${prefix}-${i}`;
      for (;;) {
        const sent = Date.now();
        try {
          await js.publish(subject, id, { msgID: id, timeout: opts.timeoutMs ?? 1000 });
          run.acked.push(id);
          run.ackTimes.push(Date.now());
          run.sentTimes.push(sent);
          break;
        } catch (err) {
          run.failures++;
          run.firstError ??= String(err);
          if (ac.signal.aborted) break; // give this one up: it was never acked
          await new Promise((r) => setTimeout(r, opts.retryDelayMs ?? 50));
        }
      }
    }
    ended = Date.now();
  })();
  return run;
}

/**
 * The `Nats-Msg-Id` of every message in `stream`, in stream order, read by
 * sequence from the stream leader (no consumer: creating one needs the meta
 * leader, which may be the node just killed); messages without one read
 * as "", deleted sequences are skipped.
 *
 * @example
 * ```ts
 * import { connect } from "@nats-io/transport-node";
 *
 * const nc = await connect({ servers: ["nats://127.0.0.1:4222"] });
 * const ids = await streamMsgIds(nc, "DUR");
 * new Set(ids).size === ids.length; // no duplicates
 * ```
 */
export async function streamMsgIds(nc: NatsConnection, stream: string): Promise<string[]> {
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const { state } = await jsm.streams.info(stream);
  const ids: string[] = [];
  const batch = 64;
  for (let from = state.first_seq; from <= state.last_seq && state.messages > 0; from += batch) {
    const seqs = Array.from(
      { length: Math.min(batch, state.last_seq - from + 1) },
      (_, i) => from + i,
    );
    const msgs = await Promise.all(seqs.map((seq) => jsm.streams.getMessage(stream, { seq })));
    for (const m of msgs) if (m) ids.push(m.header?.get("Nats-Msg-Id") ?? "");
  }
  return ids;
}
