/**
 * The open-loop rows of the end-to-end bench, on a fake generator (each phase
 * ends at once, its frames counted as encoded or received) and a fake floor:
 * which windows are measured, and the fields the rows write, in order.
 */
import assert from "node:assert/strict";
import type { FloorSubscriber } from "./e2e_floor.ts";
import { FLOOR_MODEL, type LoadCommand, type LoadPhaseDone } from "./e2e_load.ts";
import type { LoadGenerator } from "./e2e_load_process.ts";
import { OpenLoop } from "./e2e_open_loop.ts";
import { SidecarSamples } from "./e2e_sidecar.ts";
import { CpuMeter } from "./process_cpu.ts";
import { Samples } from "./samples.ts";

/** Frames each phase of the fake generator publishes. */
const FRAMES = 10;

function setup() {
  const sidecar = new SidecarSamples();
  sidecar.latencies.push(99); // the phase before: not the row's
  const floor = {
    latencies: new Samples(64),
    received: 0,
    lastReceivedAt: 0,
    measuring: false,
    opened: 0,
    open() {
      this.opened++;
      return Promise.resolve();
    },
  };
  const runs: { seconds: number; floor: boolean; measured: boolean; lags: boolean }[] = [];
  const gen = {
    run(c: LoadCommand): Promise<LoadPhaseDone> {
      if (c.cmd !== "open") throw new Error(`unexpected ${c.cmd}`);
      const toFloor = c.model === FLOOR_MODEL;
      const measured = toFloor ? floor.measuring : sidecar.measuring;
      runs.push({ seconds: c.seconds, floor: toFloor, measured, lags: c.lags ?? false });
      for (let i = 0; i < FRAMES; i++) {
        if (toFloor) {
          floor.received += 16;
          if (floor.measuring) floor.latencies.push(1);
        } else {
          sidecar.encoded += 16;
          if (sidecar.measuring) {
            sidecar.latencies.push(3);
            sidecar.toSidecar.push(1);
            sidecar.inSidecar.push(2);
          }
        }
      }
      if (toFloor) floor.lastReceivedAt = performance.now();
      else sidecar.lastEncodedAt = performance.now();
      return Promise.resolve({ done: true, published: 0, frames: FRAMES, lagP99Ms: 0.5 });
    },
  };
  const openLoop = new OpenLoop({
    sidecar,
    floorSub: floor as unknown as FloorSubscriber,
    gen: gen as unknown as LoadGenerator,
    cpuMeter: new CpuMeter({ broker: () => null, generator: () => null }),
    dropped: () => 0,
    hostWake: null,
    saturation: 1000,
  });
  return { sidecar, floor, runs, openLoop };
}

/** The fields of every open-loop row, in the order they are written. */
const SIDE_FIELDS = [
  "name",
  "tokens_per_s",
  "baseline_tokens_per_s",
  "ratio",
  "p50_ms",
  "p99_ms",
  "rss_mb",
  "offered_tokens_per_s",
  "load_fraction",
  "schedule_lag_p99_ms",
  "cpu",
];
const SPLIT_FIELDS = [
  "to_sidecar_p50_ms",
  "to_sidecar_p99_ms",
  "in_sidecar_p50_ms",
  "in_sidecar_p99_ms",
];

Deno.test("OpenLoop: a row alone settles, then measures one window of the sidecar", async () => {
  const { sidecar, floor, runs, openLoop } = setup();
  const { row, samples, floorRow } = await openLoop.row({ fraction: 0.5, seconds: 2, name: "r" });
  assert.equal(floorRow, undefined);
  assert.equal(floor.opened, 0);
  assert.deepEqual(runs, [
    { seconds: 1, floor: false, measured: false, lags: false },
    { seconds: 2, floor: false, measured: true, lags: false },
  ]);
  assert.equal(sidecar.measuring, false);
  assert.deepEqual(Object.keys(row), [...SIDE_FIELDS, ...SPLIT_FIELDS, "dropped_tokens"]);
  assert.equal(row.name, "r");
  assert.equal(row.offered_tokens_per_s, 500);
  assert.equal(row.load_fraction, 0.5);
  assert.equal(row.p99_ms, 3); // the settling frames and the phase before are left out
  assert.equal(row.to_sidecar_p99_ms, 1);
  assert.equal(row.in_sidecar_p99_ms, 2);
  assert.equal(row.dropped_tokens, 0);
  assert.equal(row.schedule_lag_p99_ms, 0.5);
  assert.equal(samples.length >= 2, true);
  assert.equal(row.rss_mb, Math.max(row.rss_mb!, ...samples));
});

Deno.test("OpenLoop: with a floor, the row and its floor alternate and each side writes its row", async () => {
  const { floor, runs, openLoop } = setup();
  const { row, floorRow } = await openLoop.row({
    fraction: 0.25,
    seconds: 1,
    name: "load",
    floorName: "floor",
  });
  assert.equal(floor.opened, 1);
  // each side's first window settles for a row's settling time, then is measured
  assert.deepEqual(runs, [
    { seconds: 1, floor: false, measured: false, lags: false },
    { seconds: 1, floor: false, measured: true, lags: true },
    { seconds: 1, floor: true, measured: false, lags: false },
    { seconds: 1, floor: true, measured: true, lags: true },
  ]);
  assert.deepEqual(Object.keys(row), [
    ...SIDE_FIELDS,
    ...SPLIT_FIELDS,
    "dropped_tokens",
    "floor_p99_ms",
    "p99_over_floor_ms",
  ]);
  assert.equal(row.floor_p99_ms, 1);
  assert.equal(row.p99_over_floor_ms, 2);
  assert.ok(floorRow);
  assert.deepEqual(Object.keys(floorRow), [...SIDE_FIELDS, "dropped_tokens"]);
  assert.equal(floorRow.name, "floor");
  assert.equal(floorRow.p99_ms, 1);
  assert.equal(floorRow.rss_mb, null);
  assert.equal(floorRow.dropped_tokens, 0);
});
