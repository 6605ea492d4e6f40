/**
 * The settings of the JetStream sink (`./sink.ts`) checked, with their
 * defaults filled in: memory bounds (`maxQueue`, `maxInFlight`), retry
 * backoff, the replay loop's poll interval, and the rule that the stream's
 * duplicate window covers the retry horizon.
 *
 * @module
 */
import { JetStreamSinkError, type JetStreamSinkOptions } from "./types.ts";

/** {@linkcode JetStreamSinkOptions} with every default that the sink uses filled in. */
export type ResolvedJetStreamSinkOptions = JetStreamSinkOptions & {
  maxQueue: number;
  maxInFlight: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  pollMs: number;
};

/**
 * Fill in the defaults of `opts` and check them; a
 * {@linkcode JetStreamSinkError} names the first setting out of range.
 *
 * @example
 * ```ts
 * const o = resolveSinkOptions({
 *   subject: "latentwatch.alerts.demo",
 *   stream: { name: "LATENTWATCH_ALERTS", subjects: ["latentwatch.alerts.>"], duplicateWindowMs: 600_000 },
 * });
 * o.maxQueue; // 1000
 * o.maxBackoffMs; // 5000
 * ```
 */
export function resolveSinkOptions(opts: JetStreamSinkOptions): ResolvedJetStreamSinkOptions {
  const o = {
    maxQueue: 1000,
    maxInFlight: 32,
    initialBackoffMs: 100,
    maxBackoffMs: 5000,
    pollMs: 100,
    ...opts,
  };
  if (!(o.maxQueue >= 1)) {
    throw new JetStreamSinkError("maxQueue", "≥ 1", String(o.maxQueue));
  }
  if (!(o.maxInFlight >= 1)) {
    throw new JetStreamSinkError("maxInFlight", "≥ 1", String(o.maxInFlight));
  }
  // Resends of one alert while NATS answers come at most maxBackoffMs plus
  // an ack timeout apart; the stream must remember the id at least that
  // long or a resend after a lost ack is stored twice.
  if (opts.stream.duplicateWindowMs < 2 * o.maxBackoffMs) {
    throw new JetStreamSinkError(
      "stream.duplicateWindowMs",
      `≥ 2 × maxBackoffMs = ${2 * o.maxBackoffMs} ms (the retry horizon)`,
      `${opts.stream.duplicateWindowMs} ms`,
    );
  }
  return o;
}
