/**
 * One paired row of the end-to-end bench (`e2e.ts`): an open-loop load with
 * the bare subscriber of `e2e_bare_reader.ts` reading the sidecar's frames
 * at the same time, and the row's figures of what the sidecar added to each
 * frame (`e2e_paired.ts`).
 *
 * @module
 */
import type { BenchResult } from "./run.ts";
import { BareReader } from "./e2e_bare_reader.ts";
import { LOAD_SHAPE } from "./e2e_load.ts";
import type { OpenLoop } from "./e2e_open_loop.ts";
import { pairedAdded, PairLog } from "./e2e_paired.ts";
import type { SidecarSamples } from "./e2e_sidecar.ts";

/** What a paired row runs on and what it measures. */
export interface PairedRowOptions {
  /** The running monitor's open-loop rows. */
  openLoop: OpenLoop;
  /** What the monitor's `onEncoded` hook records; its `paired` log is set for the row. */
  sidecar: SidecarSamples;
  /** The broker the bare subscriber connects to. */
  natsUrl: string;
  /** The saturation row's rate (tokens/s) and the share of it to run. */
  saturation: number;
  fraction: number;
  /** Seconds measured. */
  seconds: number;
  /** The row's name. */
  name: string;
}

/**
 * Measure one paired row: the bare subscriber starts before the row and
 * stops after it, thrown or not.
 *
 * @example
 * ```ts
 * import { pairedRow, type PairedRowOptions } from "./e2e_paired_row.ts";
 * declare const options: PairedRowOptions;
 * const row = await pairedRow(options);
 * row.frame_added_p99_ms; // what the sidecar added to a frame, p99 (ms)
 * ```
 */
export async function pairedRow(o: PairedRowOptions): Promise<BenchResult> {
  const framesPerSecond = (o.fraction * o.saturation) / LOAD_SHAPE.tokensPerFrame;
  // the sidecar logs measured frames only; a quarter more for an open loop catching up
  const log = new PairLog(Math.ceil(1.25 * framesPerSecond * o.seconds) + 64);
  const reader = await BareReader.start(o.natsUrl);
  let row: BenchResult;
  o.sidecar.paired = log;
  try {
    ({ row } = await o.openLoop.row({ fraction: o.fraction, seconds: o.seconds, name: o.name }));
  } catch (err) {
    o.sidecar.paired = null;
    await reader.stop().catch(() => {}); // the row's error is the one to report
    throw err;
  }
  o.sidecar.paired = null;
  const bare = await reader.stop();
  return Object.assign(row, pairedAdded(log.pairs(), bare.pairs), {
    pair_overflow_sidecar: log.overflow,
    pair_overflow_bare: bare.overflow,
  });
}
