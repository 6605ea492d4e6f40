/**
 * What the JetStream sink (`./sink.ts`) does at start: open its spool and
 * say what the last run left there (`alert.spool_damaged`,
 * `alert.spool_loaded`), and create or check the alert stream, leaving the
 * check to the first publish while NATS does not answer
 * (`alert.stream_check_deferred`).
 *
 * @module
 */
import type { Bus } from "../../bus/bus.ts";
import { isTransientBusError } from "../../bus/errors.ts";
import { Spool } from "../spool.ts";
import type { JetStreamSinkOptions, JetStreamSinkStats } from "./types.ts";

/**
 * Open the spool in `o.spoolDir` (loading what a previous run left), count
 * its torn and corrupt records in `stats`, and log what was damaged and what
 * is to be resent. Null without a spool folder.
 *
 * @example
 * ```ts
 * const stats = { spoolTorn: 0, spoolCorrupt: 0 };
 * const spool = openSinkSpool({ spoolDir: "/var/lib/latentwatch/spool" }, stats);
 * spool?.pending; // alerts the last run could not deliver
 * ```
 */
export function openSinkSpool(
  o: Pick<JetStreamSinkOptions, "spoolDir" | "spool" | "log">,
  stats: Pick<JetStreamSinkStats, "spoolTorn" | "spoolCorrupt">,
): Spool | null {
  if (!o.spoolDir) return null;
  const spool = Spool.open(o.spoolDir, o.spool);
  const s = spool.stats;
  stats.spoolTorn = s.torn;
  stats.spoolCorrupt = s.corrupt;
  if (s.torn + s.corrupt > 0) {
    // a crash cut a write short, or the disk damaged a record: what was
    // skipped cannot be resent, so say so loudly
    o.log?.error("alert.spool_damaged", {
      dir: o.spoolDir,
      torn: s.torn,
      corrupt: s.corrupt,
    });
  }
  if (s.loaded > 0) {
    o.log?.warn("alert.spool_loaded", {
      dir: o.spoolDir,
      alerts: s.loaded,
      bytes: s.bytes,
      note: "resending alerts a previous run could not deliver",
    });
  }
  return spool;
}

/**
 * Create or check the alert stream `o.stream`. When NATS does not answer
 * (down, or no answer in time) the check is left to the first publish that
 * misses the stream, and logged; an error NATS answers with is thrown.
 *
 * @example
 * ```ts
 * import type { Bus } from "../../bus/bus.ts";
 * declare const bus: Bus;
 * await checkStream(bus, {
 *   stream: { name: "LATENTWATCH_ALERTS", subjects: ["latentwatch.alerts.>"], duplicateWindowMs: 600_000 },
 * });
 * ```
 */
export async function checkStream(
  bus: Bus,
  o: Pick<JetStreamSinkOptions, "stream" | "log">,
): Promise<void> {
  // NATS down, or connected but no answer in time (a cluster still electing its leader):
  // the first publish that misses the stream creates it
  let deferred: string | null = "NATS unreachable";
  if (bus.connected) {
    try {
      await bus.ensureStream(o.stream);
      deferred = null;
    } catch (err) {
      if (!isTransientBusError(err)) throw err;
      deferred = `JetStream did not answer in time (${(err as Error).message})`;
    }
  }
  if (deferred !== null) {
    o.log?.warn("alert.stream_check_deferred", {
      stream: o.stream.name,
      note: `${deferred}; the stream is created on the first publish that misses it`,
    });
  }
}
