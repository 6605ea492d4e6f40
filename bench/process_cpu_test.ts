/** CPU time of the bench's processes, read from real processes. */
import assert from "node:assert/strict";
import { CpuMeter, cpuText, processCpuMs, statCpuMs } from "./process_cpu.ts";

Deno.test("statCpuMs: utime + stime after the last parenthesis of the name, in ticks of 10 ms", () => {
  // name "a (b) c": spaces and parentheses inside it; utime 150 and stime 25 ticks
  assert.equal(statCpuMs("42 (a (b) c) S 1 42 42 0 -1 0 0 0 0 0 150 25 0 0 20 0 1 0"), 1750);
  assert.equal(statCpuMs("7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 3 0 0 20 0 1 0"), 30);
  assert.equal(statCpuMs("no name here"), null);
  assert.equal(statCpuMs("7 (x) R 1 7"), null); // cut short
  assert.equal(statCpuMs("7 (x) R 1 7 7 0 -1 0 0 0 0 0 u s"), null);
});

Deno.test("processCpuMs: nothing for a missing or unknown process", () => {
  assert.equal(processCpuMs(null), null);
  assert.equal(processCpuMs(undefined), null);
  assert.equal(processCpuMs(2 ** 30), null); // above any pid_max
});

Deno.test({
  name: "CpuMeter: a busy child reads well above a sleeping one, and this process its own spinning",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const busy = new Deno.Command("sh", { args: ["-c", "while :; do :; done"] }).spawn();
    const idle = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      const meter = new CpuMeter({ broker: () => busy.pid, generator: () => idle.pid });
      await new Promise((r) => setTimeout(r, 100)); // both started
      // the children, while this process sleeps; the bounds leave room for a loaded 2-core
      // host (other tests, another bench), yet a reader of the wrong fields or units fails them
      const mark = meter.mark();
      await new Promise((r) => setTimeout(r, 700));
      const rec = meter.since(mark);
      assert.ok(rec.seconds >= 0.69 && rec.seconds < 5, `seconds ${rec.seconds}`);
      assert.ok(
        rec.broker_cores! > 0.2 && rec.broker_cores! <= 1.1,
        `busy child ${rec.broker_cores}`,
      );
      assert.ok(rec.generator_cores! < 0.05, `sleeping child ${rec.generator_cores}`);
      assert.ok(rec.sidecar_cores < 0.2, `this process, asleep: ${rec.sidecar_cores}`);
      // this process, spinning
      const spin = meter.mark();
      const until = performance.now() + 500;
      let spins = 0;
      while (performance.now() < until) spins++;
      const own = meter.since(spin, 350);
      assert.ok(spins > 0);
      assert.ok(
        own.sidecar_cores > 0.2 && own.sidecar_cores < 1.5,
        `this process ${own.sidecar_cores}`,
      );
      // µs per frame: the same CPU time over 350 frames
      const expect = (own.sidecar_cores * own.seconds * 1e6) / 350;
      assert.ok(
        Math.abs(own.sidecar_us_per_frame! - expect) / expect < 0.05,
        `${own.sidecar_us_per_frame} vs ${expect}`,
      );
      assert.match(
        cpuText(own),
        /^, CPU: sidecar \d\.\d\d \(\d+ µs\/frame\), broker \d\.\d\d, generator 0\.0\d cores$/,
      );
    } finally {
      busy.kill("SIGKILL");
      idle.kill("SIGKILL");
      await busy.status;
      await idle.status;
    }
  },
});

Deno.test("CpuMeter: a process that is gone reads null, and no frames leave µs per frame out", () => {
  const meter = new CpuMeter({ broker: () => null, generator: () => 2 ** 30 });
  const rec = meter.since(meter.mark());
  assert.equal(rec.broker_cores, null);
  assert.equal(rec.generator_cores, null);
  assert.equal(rec.sidecar_us_per_frame, undefined);
  assert.equal(cpuText(undefined), "");
});

Deno.test("CpuMeter.over: CPU summed over the spans ÷ their seconds summed, not the time between them", () => {
  const at = (ms: number, selfUs: number, broker: number | null, generator: number | null) => ({
    at: ms,
    selfUs,
    broker,
    generator,
  });
  // two spans of 2 s and 1 s with a 10 s gap between them that must not count
  const rec = CpuMeter.over([
    { from: at(0, 0, 100, 50), to: at(2_000, 1_000_000, 1_100, 550) },
    { from: at(12_000, 5_000_000, 9_000, 9_000), to: at(13_000, 5_500_000, 9_500, 9_100) },
  ], 3_000);
  assert.equal(rec.seconds, 3);
  assert.equal(rec.sidecar_cores, 0.5); // 1.5 s of CPU over 3 s
  assert.equal(rec.broker_cores, 0.5); // 1,000 + 500 ms
  assert.equal(rec.generator_cores, 0.2); // 500 + 100 ms
  assert.equal(rec.sidecar_us_per_frame, 500); // 1.5e6 µs / 3,000 frames
  // a process unreadable at one mark: unknown over the row, not the other spans' share
  const gone = CpuMeter.over([
    { from: at(0, 0, 100, null), to: at(1_000, 10, 200, 5) },
    { from: at(2_000, 10, 200, 5), to: at(3_000, 20, 300, 6) },
  ]);
  assert.equal(gone.generator_cores, null);
  assert.equal(gone.broker_cores, 0.1);
  assert.equal(gone.sidecar_us_per_frame, undefined);
});
