import assert from "node:assert/strict";
import { ClockProbeError, measureClock, parseClockProbe } from "./clock_probe.ts";
import { parseCpuInfo, readTheoreticalF32Peak } from "./cpu_peak.ts";
import { runNumpyChild } from "./numpy_child.ts";

const RUN = { threads: 2, windows: 20, loops: 20_000 };

Deno.test("the probe's output: each thread's best window, the highest of them the clock", () => {
  const clock = parseClockProbe({ ...RUN, stdout: "3.6950 20000000\n3.6911 20000000\n" });
  assert.equal(clock.ghz, 3.695);
  assert.deepEqual(clock.per_thread_ghz, [3.695, 3.6911]);
  assert.match(clock.method, /^2 threads at once, each the best of 20 windows of 20000000 /);
});

Deno.test("the probe's output is rejected with its line when it is not what the probe writes", () => {
  const bad = (stdout: string, why: RegExp) =>
    assert.throws(() => parseClockProbe({ ...RUN, stdout }), (e: Error) => {
      assert.ok(e instanceof ClockProbeError, e.name);
      assert.match(e.message, why);
      return true;
    });
  bad("3.69 20000000\n", /stdout:1: expected 2 lines \(one per thread\), found 1/);
  bad(
    "3.69 20000000\n3.69 10000000\n",
    /stdout:2: expected the chain's sum 20000000, found 10000000/,
  );
  bad("3.69 20000000\nfast 20000000\n", /stdout:2: expected "GHZ SUM", found "fast 20000000"/);
  bad(
    "0.01 20000000\n3.69 20000000\n",
    /stdout:1: expected a clock between 0\.1 and 10 GHz, found 0\.01/,
  );
});

const x86 = Deno.build.arch === "x86_64" && Deno.build.os === "linux";

async function hasCompiler(): Promise<boolean> {
  try {
    return (await new Deno.Command(Deno.env.get("CC") ?? "cc", { args: ["--version"] }).output())
      .success;
  } catch {
    return false;
  }
}
const canProbe = x86 && await hasCompiler();
if (!canProbe) {
  console.error("clock_probe_test: not x86-64 Linux with a C compiler; probe runs skipped");
}

Deno.test({
  name: "the probe's clock is near the one Linux reports: within 0.5–3× the cpu MHz line",
  ignore: !canProbe,
  fn: async () => {
    const clock = await measureClock({ windows: 30, loops: 5_000 });
    assert.ok(clock, "measured");
    assert.equal(clock.per_thread_ghz.length, navigator.hardwareConcurrency);
    const nominal = parseCpuInfo(Deno.readTextFileSync("/proc/cpuinfo")).mhz! / 1000;
    for (const ghz of clock.per_thread_ghz) {
      assert.ok(ghz > 0.5 * nominal && ghz < 3 * nominal, `${ghz} GHz against ${nominal}`);
    }
  },
});

let numpy = false;
try {
  numpy = (await new Deno.Command("python3", { args: ["-c", "import numpy"] }).output()).success;
} catch { /* no python3 */ }

Deno.test({
  name: "a peak on the measured clock is a ceiling: NumPy's GEMM, every core, stays under it",
  ignore: !canProbe || !numpy,
  fn: async () => {
    const clock = await measureClock({ windows: 30, loops: 5_000 });
    const peak = readTheoreticalF32Peak({ measuredClock: clock });
    assert.ok(peak && clock);
    const report = await runNumpyChild({
      job: { cases: [], matmul: [[1024, 4096, 4096]], seconds: 0.5, warmup_seconds: 0.2 },
    });
    const gemm = report.matmul![0].gflops;
    // a GEMM cannot beat cores × FLOP/cycle × the clock the cores ran at; on a
    // Zen 4 guest the nominal clock alone (2.596 GHz) gave 166 against a measured 191
    assert.ok(gemm <= peak.gflops, `NumPy ${gemm.toFixed(1)} GFLOP/s > ${peak.derivation}`);
    assert.ok(gemm > 0.05 * peak.gflops, `NumPy ${gemm.toFixed(1)} GFLOP/s: the GEMM ran`);
  },
});
