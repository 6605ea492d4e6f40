/**
 * The open-loop rows of the end-to-end bench (`e2e.ts`, phases 2 and 3): the
 * generator publishes frames on a schedule at a fixed share of the saturation
 * rate, whatever the sidecar does, in windows that each settle at their rate
 * before they are measured. At the floor's loads the row's windows alternate
 * with its floor's (`e2e_windows.ts`): the same load read by the bare
 * subscriber (`e2e_floor.ts`) while the monitor idles. Each row is built from
 * its own side's windows: rate, percentiles and the latency split, the
 * generator's lag, who used the cores, RSS, and the host's wake-ups where
 * they are metered.
 *
 * @module
 */
import type { BenchResult } from "./run.ts";
import { FLOOR_MODEL, LOAD_SHAPE } from "./e2e_load.ts";
import type { FloorSubscriber } from "./e2e_floor.ts";
import type { LoadGenerator } from "./e2e_load_process.ts";
import { type HostWakeMeter, hostWakeOver } from "./host_wake.ts";
import { SETTLE_SECONDS, SWITCH_SETTLE_SECONDS, WINDOW_SECONDS } from "./e2e_plan.ts";
import { percentileOfSorted } from "./samples.ts";
import { CpuMeter } from "./process_cpu.ts";
import { latencySplit, rssMb, type SidecarSamples } from "./e2e_sidecar.ts";
import {
  alternation,
  type Block,
  overFloor,
  type Side,
  SideTally,
  type Window,
} from "./e2e_windows.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the open-loop rows run on: the running monitor's records, the generator and the meters. */
export interface OpenLoopOptions {
  /** What the monitor's `onEncoded` hook records of the sidecar. */
  sidecar: SidecarSamples;
  /** The floors' bare subscriber, connected at the first floor row. */
  floorSub: FloorSubscriber;
  /** The load generator, in its own process. */
  gen: LoadGenerator;
  /** Who used the cores: this process (the sidecar), the broker, the generator. */
  cpuMeter: CpuMeter;
  /** Tokens the sidecar has dropped so far (its telemetry's count). */
  dropped: () => number;
  /** The host's wake-up meter, with `E2E_HOST_WAKE=1`. */
  hostWake: HostWakeMeter | null;
  /** The saturation row's rate (tokens/s), which a row's load is a share of. */
  saturation: number;
}

/** One open-loop row to measure. */
export interface OpenLoopRow {
  /** The load, as a share of the saturation rate. */
  fraction: number;
  /** Seconds measured (on each side, with a floor). */
  seconds: number;
  /** The row's name. */
  name: string;
  /** The floor's row name: with it, the row alternates with its floor. */
  floorName?: string;
}

/** An open-loop row, the RSS sampled every second over it, and its floor's row where it had one. */
export interface OpenLoopResult {
  row: BenchResult;
  samples: number[];
  floorRow?: BenchResult;
}

/**
 * The open-loop rows of one running monitor, measured one after another.
 *
 * @example
 * ```ts
 * import { OpenLoop, type OpenLoopOptions } from "./e2e_open_loop.ts";
 * declare const options: OpenLoopOptions;
 * const openLoop = new OpenLoop(options);
 * const { row, floorRow } = await openLoop.row({
 *   fraction: 0.25,
 *   seconds: 5,
 *   name: "e2e/serve-jumprelu-768x24576-watched64/load-25pct",
 *   floorName: "e2e/serve-jumprelu-768x24576-watched64/floor-25pct",
 * });
 * ```
 */
export class OpenLoop {
  readonly #o: OpenLoopOptions;

  constructor(options: OpenLoopOptions) {
    this.#o = options;
  }

  /** Measure a row at its fixed rate; with `floorName`, in windows alternating with its floor. */
  async row(
    { fraction, seconds: secs, name: rowName, floorName }: OpenLoopRow,
  ): Promise<OpenLoopResult> {
    const { sidecar: rec, floorSub, hostWake } = this.#o;
    const { latencies, toSidecar, inSidecar } = rec;
    const { tokensPerFrame } = LOAD_SHAPE;
    const rate = fraction * this.#o.saturation;
    // the row and its floor in windows that alternate: both meet the same seconds of a host
    // whose speed drifts (a floor measured minutes later moved 3× between runs)
    const blocks: Block[] = floorName
      ? alternation(secs, WINDOW_SECONDS)
      : [{ side: "sidecar", seconds: secs }];
    rec.measuring = false; // each window measures after it settles
    if (floorName) await floorSub.open();
    let wall0 = 0;
    const samples: number[] = [];
    let sampleEverySecond: ReturnType<typeof setInterval> | undefined;
    // the row starts after its first window settles: the phase before (saturation's garbage,
    // RSS included) is not the row's
    const startRow = () => {
      for (const s of [latencies, toSidecar, inSidecar, floorSub.latencies]) s.clear();
      rec.splitMissing = 0;
      rec.phasePeak = rssMb();
      wall0 = Date.now();
      samples.push(rssMb());
      sampleEverySecond = setInterval(() => samples.push(rssMb()), 1000);
    };
    const sides = { sidecar: new SideTally(), floor: new SideTally() };
    try {
      for (const [i, { side, seconds }] of blocks.entries()) {
        // each side's first window settles for as long as a row does (the floor's connection
        // may carry its first traffic), later ones only past the switch
        const first = blocks.findIndex((b) => b.side === side) === i;
        const settle = first ? SETTLE_SECONDS : SWITCH_SETTLE_SECONDS;
        const onSettled = i === 0 ? startRow : undefined;
        // a row of several windows pools its frames' lags; one window reports its own p99
        const lags = blocks.length > 1;
        sides[side].add(await this.#window({ side, rate, seconds, settle, onSettled, lags }));
      }
    } finally {
      clearInterval(sampleEverySecond);
    }
    samples.push(rssMb());
    const sorted = latencies.sorted();
    const floorSorted = floorSub.latencies.sorted();
    const { sidecar, floor } = sides;
    // what a side's row says of its windows: rate, percentiles, the generator's lag, the cores
    const sideRow = (name: string, tally: SideTally, sorted: Float64Array): BenchResult => ({
      name,
      tokens_per_s: tally.tokens / tally.seconds,
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: percentileOfSorted(sorted, 50),
      p99_ms: percentileOfSorted(sorted, 99),
      rss_mb: null,
      offered_tokens_per_s: rate,
      load_fraction: fraction,
      schedule_lag_p99_ms: tally.lagP99Ms,
      cpu: CpuMeter.over(tally.spans, tally.tokens / tokensPerFrame),
    });
    const row: BenchResult = {
      ...sideRow(rowName, sidecar, sorted),
      ...latencySplit(toSidecar, inSidecar),
      ...(rec.splitMissing > 0 ? { split_missing_frames: rec.splitMissing } : {}),
      rss_mb: Math.max(rec.phasePeak, ...samples),
      dropped_tokens: sidecar.dropped,
      ...(floorName
        ? {
          floor_p99_ms: percentileOfSorted(floorSorted, 99),
          p99_over_floor_ms: overFloor(
            percentileOfSorted(sorted, 99),
            percentileOfSorted(floorSorted, 99),
          ),
        }
        : {}),
      ...hostWakeOver(hostWake, wall0),
    };
    if (!floorName) return { row, samples };
    const floorRow: BenchResult = {
      ...sideRow(floorName, floor, floorSorted),
      // not received by the deadline (a slow consumer's messages that nats-server dropped)
      dropped_tokens: floor.missing,
      // the host's wake-ups over the row and its floor together, settling included: their
      // windows alternate
      ...hostWakeOver(hostWake, wall0),
      // its cpu's "sidecar" is this process: the bare subscriber, and the monitor idling
    };
    return { row, samples, floorRow };
  }

  /**
   * One window of a row: its rate for `settle` seconds, not measured (the row is then the
   * steady state at its load, not the end of the phase before), then `seconds` measured. The
   * floor's frames name FLOOR_MODEL, which the monitor does not subscribe to: it idles
   * meanwhile, as if stopped, and the bare subscriber reads them.
   */
  async #window(
    { side, rate, seconds: secs, settle, onSettled, lags }: {
      side: Side;
      rate: number;
      seconds: number;
      settle: number;
      /** Called between the settling time and the measured seconds. */
      onSettled?: () => void;
      /** Ask the generator for every frame's lag (see {@linkcode Window.lagsMs}). */
      lags: boolean;
    },
  ): Promise<Window> {
    const { sidecar: rec, floorSub, gen, cpuMeter, dropped } = this.#o;
    const { tokensPerFrame } = LOAD_SHAPE;
    const model = side === "floor" ? { model: FLOOR_MODEL } : {};
    const count = () => side === "floor" ? floorSub.received : rec.encoded;
    const setMeasuring = (on: boolean) =>
      side === "floor" ? floorSub.measuring = on : rec.measuring = on;
    const run = async (seconds: number, keepLags: boolean) => {
      const start = count();
      const done = await gen.run(
        { cmd: "open", rate, seconds, lags: keepLags, ...model },
        Date.now() + seconds * 1000 + 30_000,
      );
      const want = start + done.frames * tokensPerFrame, deadline = Date.now() + 10_000;
      while (count() < want && Date.now() < deadline) await sleep(1);
      return { done, tokens: count() - start, missing: want - count() };
    };
    await run(settle, false);
    onSettled?.();
    setMeasuring(true);
    const from = cpuMeter.mark(), t0 = performance.now(), dropped0 = dropped();
    const { done, tokens, missing } = await run(secs, lags);
    setMeasuring(false);
    const to = cpuMeter.mark();
    // a window ends at its last frame (evaluated, or received), not at the drain loop's next look
    const last = side === "sidecar" ? rec.lastEncodedAt : floorSub.lastReceivedAt;
    return {
      span: { from, to },
      tokens,
      seconds: (Math.max(last, t0 + 1) - t0) / 1000,
      missing,
      // the sidecar's refusals; the floor's losses are its `missing`
      dropped: side === "sidecar" ? dropped() - dropped0 : 0,
      lagP99Ms: done.lagP99Ms,
      ...(done.lagsMs ? { lagsMs: done.lagsMs } : {}),
    };
  }
}
