/** The host's wake-up lateness meter: its sums, and real meters on this machine. */
import assert from "node:assert/strict";
import { HostWakeMeter, type HostWakeWindow, summarizeHostWake } from "./host_wake.ts";

const w = (t: number, cpu: number, o: Partial<HostWakeWindow> = {}): HostWakeWindow => ({
  t,
  cpu,
  wakes: 100,
  gt05: 0,
  gt1: 0,
  gt2: 0,
  gt5: 0,
  max: 0.2,
  ...o,
});

Deno.test("summarizeHostWake: shares of late wake-ups over the row's windows only", () => {
  const windows = [
    w(900, 0, { gt1: 50, gt2: 50, gt5: 50, max: 40 }), // before the row: left out
    w(1100, 0, { gt05: 9, gt1: 4, gt2: 2, gt5: 1, max: 6.5 }),
    w(1100, 1, { gt1: 2, max: 1.5 }),
    w(1200, 0),
    w(1200, 1, { wakes: 200, gt1: 2, gt2: 2, max: 2.25 }),
    w(1400, 0, { gt5: 90, max: 90 }), // after the row and its last window: left out
  ];
  // 500 wakes in the four windows within (1000, 1200 + 100]
  assert.deepEqual(
    summarizeHostWake(windows, { from: 1000, to: 1200, policy: "fifo", periodMs: 1 }),
    {
      policy: "fifo",
      period_ms: 1,
      cpus: 2,
      wakes: 500,
      late_over_1ms_pct: 1.6, // 8 of 500
      late_over_2ms_pct: 0.8, // 4 of 500
      late_over_5ms_pct: 0.2, // 1 of 500
      max_late_ms: 6.5,
    },
  );
  assert.deepEqual(
    summarizeHostWake(windows, { from: 2000, to: 3000, policy: "fifo", periodMs: 1 }),
    null,
  );
});

Deno.test("HostWakeMeter: one meter per CPU wakes about once a millisecond and stops", async () => {
  const meter = await HostWakeMeter.start({ maxSeconds: 20 });
  if (meter === null) throw new Error("python3 could not run bench/host_wake.py");
  const from = Date.now();
  await new Promise((r) => setTimeout(r, 1500));
  const s = meter.summary(from, Date.now());
  await meter.stop();
  assert(s !== null, "no windows within the 1.5 s");
  assert.deepEqual(s.cpus, navigator.hardwareConcurrency);
  // 1.5 s at 1 kHz on each CPU, give or take a window at each end and a slow host
  const expected = 1500 * navigator.hardwareConcurrency;
  assert(s.wakes > 0.6 * expected && s.wakes < 1.2 * expected, `${s.wakes} wake-ups`);
  assert(s.max_late_ms >= 0 && s.late_over_1ms_pct <= 100);
  const count = meter.windows.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(meter.windows.length, count, "a window arrived after stop()");
});

Deno.test("HostWakeMeter: a python that cannot run the meter is reported, not thrown", async () => {
  let why = "";
  const meter = await HostWakeMeter.start({ python: "false", onSkip: (m) => why = m });
  assert.deepEqual(meter, null);
  assert(why.includes("host_wake.py on CPU 0"), why);
});
