/**
 * `deno task bench [--quick]`: latentwatch's performance record.
 *
 * - encode/…: SAE encode throughput through onnxruntime (CPU) for 768→24576
 *   TopK k=32 and JumpReLU, 2304→16384 JumpReLU and 4096→65536 TopK k=64, at
 *   batch 1, 16 and 128, with f32 and bf16 weights, against NumPy computing
 *   the same thing the way SAELens does, on the same weights and inputs, in
 *   the same run (ratio = latentwatch / NumPy); achieved GFLOP/s per row and,
 *   at batch 128, the share of this machine's best measured matmul peak;
 *   the encode path that ran and its fallbacks (`path`, `fallbacks`).
 *   NumPy runs without `OPENBLAS_CORETYPE`/`OPENBLAS_L2_SIZE`
 *   (`bench/numpy_child.ts`), so OpenBLAS picks its own kernels.
 * - machine.matmul_peak_gflops: one big f32 MatMul through onnxruntime (this
 *   process, the encoder's threads) and through NumPy, each also as a share
 *   of machine.theoretical_peak_gflops (`bench/cpu_peak.ts`; its clock the
 *   higher of the nominal and the one measured on every core at once,
 *   `bench/clock_probe.ts`);
 *   machine.numpy_blas: the kernel OpenBLAS chose.
 * - watched/…: encoding only 16, 64 or 256 watched latents (exact for JumpReLU),
 *   ratio against the full encode of the same SAE in the same run.
 * - e2e/…: through `serve` and a real nats-server (`bench/e2e.ts`, in a child
 *   process so its RSS is the sidecar's): saturation, latency at fixed loads,
 *   RSS over time; inline gating (`bench/gate.ts`, `bench/python_gate.ts`).
 * - policy/…: policy evaluation per token with 1, 100 and 1000 rules.
 * - alerts/spool-fsync-…: alerts/s through the JetStream sink with the
 *   spool's fsync `never`, `batch` and `always` (`bench/alert_spool.ts`).
 * - policy/compile-chain-…, policy/reload-chain-…: compile time of chained
 *   macros and the slowest `/healthz` answer during a reload of the largest
 *   (`bench/policy_compile.ts`).
 * - workbench/…: in headless Chromium, `explore` on a 1,000-request trace to
 *   the first heatmap drawn, and a rule edit to its preview (p50_ms).
 * - scale-out/…: the same traffic through 1, 2 and 3 `serve` processes
 *   sharing 16 partitions, against the 1-sidecar rate (`bench/scale_out.ts`).
 *
 * Writes `bench/results/latest.json`, the charts beside it, and prints a table.
 *
 * @module
 */
import type { PairedAdded } from "./e2e_paired.ts";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import { benchPythonGate } from "./python_gate.ts";
import { encodeChart, latencyChart } from "./chart.ts";
import { benchPolicy } from "./policy.ts";
import { benchAlertSpool } from "./alert_spool.ts";
import { benchPolicyCompile } from "./policy_compile.ts";
import { benchScaleOut } from "./scale_out.ts";
import { benchWorkbenchBrowser } from "./workbench_browser.ts";
import { ortMatmulPeak, PEAK_SHAPES } from "./matmul_peak.ts";
import { childRows } from "./child_rows.ts";
import { type NumpyBlas, type NumpyReport, runNumpyChild } from "./numpy_child.ts";
import { readTheoreticalF32Peak } from "./cpu_peak.ts";
import { measureClock } from "./clock_probe.ts";
import { machineHeader, machineRecord, type MeasuredPeaks } from "./machine.ts";
import { nativeKernelsStatus } from "../src/runtime/native_kernels.ts";
import { resultsTable } from "./table.ts";
import { benchWatched, ROW_SECONDS, WARMUP_SECONDS } from "./encode_rows.ts";
import { BATCHES, benchEncode } from "./encode_section.ts";
import type { HarnessRecord } from "./harness.ts";
import type { CpuRecord } from "./process_cpu.ts";
import type { HostWakeSummary } from "./host_wake.ts";

/**
 * One row of the results file. The first seven fields are fixed by issue 7;
 * the optional ones are extra detail some rows carry.
 */
export interface BenchResult extends Partial<PairedAdded> {
  name: string;
  tokens_per_s: number;
  baseline_tokens_per_s: number | null;
  ratio: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  rss_mb: number | null;
  /** encode/: achieved GFLOP/s of the encoder GEMM, 2·dIn·dSae·tokens/s. */
  gflops?: number;
  /** encode/: the NumPy baseline's GFLOP/s. */
  baseline_gflops?: number | null;
  /** encode/ at batch 128: `gflops` ÷ `machine.matmul_peak_gflops.peak`. */
  pct_of_peak?: number | null;
  /** encode/: mean active latents per token on the bench input. */
  l0?: number;
  /**
   * encode/: which encode path ran (the encoder's `path`, "f32" when it has
   * none) in most of the row's timed calls, the calls on each path
   * (`path_calls`: a tuning encoder times the other path now and then), and
   * how many tokens fell back to the exact full encode (`fallbackTokens`, 0
   * when it has none), over the row's timed calls.
   */
  path?: string;
  path_calls?: Record<string, number>;
  fallbacks?: number;
  /**
   * encode/ and watched/: interleaved turns taken (encode/: ENCODE_ROUNDS in each of
   * ENCODE_PASSES passes; watched/: ENCODE_ROUNDS to MAX_ENCODE_ROUNDS, until settled), and
   * each side's tokens/s in every turn; e2e/…/saturation: its closed-loop turns
   * (the row reports their median).
   */
  turns?: number;
  turns_tokens_per_s?: number[];
  baseline_turns_tokens_per_s?: (number | null)[];
  /** e2e/serve-* and e2e/gate-jumprelu-* rows: how the broker and the load generator were set up (`bench/harness.ts`). */
  harness?: HarnessRecord;
  /** e2e/ at a fixed load: the rate the generator offered, and its share of saturation. */
  offered_tokens_per_s?: number;
  load_fraction?: number;
  /** e2e/: tokens the sidecar dropped (queue full) during the phase. */
  dropped_tokens?: number;
  /** e2e/ open loop: how late the generator published against its schedule (p99, ms). */
  schedule_lag_p99_ms?: number;
  /**
   * e2e/serve-* with `E2E_HOST_WAKE=1`: the host's own wake-up lateness over the row
   * (`bench/host_wake.ts`): shares of a real-time thread's 1 ms wake-ups, on every CPU, later
   * than 1, 2 and 5 ms, and the latest.
   */
  host_wake?: HostWakeSummary;
  /**
   * e2e/serve-* rows: who used the cores over the row (`bench/process_cpu.ts`): CPU seconds
   * per second of the sidecar's process (in floor rows, the bare subscriber's), the broker and
   * the generator, and the sidecar's CPU time per frame.
   */
  cpu?: CpuRecord;
  /**
   * e2e/serve-* load rows at the floor's loads: the p99 of their floor (`…/floor-Npct`, the
   * bare subscriber, measured in windows alternating with the row's), and the row's p99 less it.
   */
  floor_p99_ms?: number | null;
  p99_over_floor_ms?: number | null;
  /**
   * e2e/ open loop: the latency split at the sidecar's door, ms: frame published →
   * handed to the sidecar's subscription (transport, and any wait for the sidecar's
   * thread), and received there → encoded and evaluated.
   */
  to_sidecar_p50_ms?: number | null;
  to_sidecar_p99_ms?: number | null;
  in_sidecar_p50_ms?: number | null;
  in_sidecar_p99_ms?: number | null;
  /**
   * e2e/…/paired-Npct (with the `PairedAdded` fields): frames the sidecar's log and the bare
   * subscriber's had no room for.
   */
  pair_overflow_sidecar?: number;
  pair_overflow_bare?: number;
  /** e2e/ open loop: frames in the latency figures that the split has no arrival time for. */
  split_missing_frames?: number;
  /** e2e/…/rss-*: RSS samples (MB) one second apart, and the verdict. */
  rss_samples_mb?: number[];
  rss_first_mb?: number;
  rss_last_mb?: number;
  rss_within_10pct?: boolean;
  /**
   * alerts/…: alerts per second through the JetStream sink (write-ahead to
   * the spool, publish, acks) with one fsync setting, and with `never`, the
   * baseline of `ratio`; `tokens_per_s` is 0 on these rows.
   */
  alerts_per_s?: number;
  baseline_alerts_per_s?: number;
  /** policy/compile-chain-…: parse and compile time of the policy file, ms. */
  parse_ms?: number;
  compile_ms?: number;
  /** policy/reload-chain-…: the reload's duration and the slowest `/healthz` answer during it, ms. */
  reload_ms?: number;
  healthz_polls?: number;
  max_healthz_ms?: number;
}

const { values } = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean" }, out: { type: "string" } },
});
const quick = values.quick ?? false;
const outPath = values.out ?? new URL("./results/latest.json", import.meta.url).pathname;

/** The bench's own clock: its progress lines (when each turn ran, to set beside the host's) and its total. */
const benchStart = performance.now();
const progress = (msg: string) =>
  console.error(`bench: [${((performance.now() - benchStart) / 1000).toFixed(1)} s] ${msg}`);

/** The BLAS the NumPy child reported (the first report that has one). */
let numpyBlas: NumpyBlas | null = null;

/**
 * Run `bench/numpy_baseline.py` on a job, without the variables that force
 * OpenBLAS's kernel (`bench/numpy_child.ts`); null when python3 or NumPy is
 * missing.
 */
async function runNumpy(job: Record<string, unknown>): Promise<NumpyReport | null> {
  try {
    const report = await runNumpyChild({
      job: { seconds: ROW_SECONDS, warmup_seconds: WARMUP_SECONDS, ...job },
    });
    numpyBlas ??= report.blas ?? null;
    return report;
  } catch (err) {
    progress(`NumPy unavailable (${(err as Error).message.split("\n")[0]}); baseline left empty`);
    return null;
  }
}

/** The machine's matmul peak: onnxruntime in this process and NumPy, same shapes, same run. */
async function matmulPeak(): Promise<MeasuredPeaks> {
  const shapes = [...PEAK_SHAPES];
  progress(`matmul peak: f32 GEMM ${shapes.map((s) => s.join("x")).join(", ")} (onnxruntime)`);
  const ortRows = await ortMatmulPeak(shapes, ROW_SECONDS);
  progress("matmul peak: the same GEMMs through NumPy");
  const np = (await runNumpy({ matmul: shapes }))?.matmul ?? [];
  const rows = shapes.map((shape, i) => ({
    shape: shape.join("x"),
    onnxruntime: ortRows[i].gflops,
    numpy: np[i]?.gflops ?? null,
  }));
  const best = (a: (number | null)[]) => Math.max(0, ...a.filter((v): v is number => v !== null));
  const peak = {
    onnxruntime: best(rows.map((r) => r.onnxruntime)),
    numpy: np.length ? best(rows.map((r) => r.numpy)) : null,
    peak: best(rows.flatMap((r) => [r.onnxruntime, r.numpy])),
    shapes: rows,
  };
  for (const r of rows) {
    progress(
      `matmul ${r.shape}: onnxruntime ${r.onnxruntime.toFixed(1)} GFLOP/s, NumPy ${
        r.numpy?.toFixed(1) ?? "—"
      }`,
    );
  }
  return peak;
}

/** `/proc/loadavg`'s 1, 5 and 15 minute averages: other work on the machine skews every figure. */
function loadavg(): number[] | null {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return null;
  }
}

const loadStart = loadavg();
if (loadStart && loadStart[0] > 0.5) {
  progress(`the machine is busy (load average ${loadStart.join(" ")}): figures will be low`);
}
const peak = await matmulPeak();
progress("clock: dependent adds on every core at once (bench/clock_probe.c)");
const measuredClock = await measureClock({
  onSkip: (why) => progress(`clock not measured: ${why}`),
})
  .catch((e: Error) => {
    progress(`clock not measured: ${e.message}`);
    return null;
  });
if (measuredClock) {
  progress(`clock: ${measuredClock.per_thread_ghz.map((g) => g.toFixed(3)).join(", ")} GHz`);
}
const results: BenchResult[] = await benchEncode({
  quick,
  peakGflops: peak.peak,
  runNumpy,
  progress,
});
results.push(...await benchWatched(results, { maxBatch: Math.max(...BATCHES), progress }));
results.push(...await childRows("./e2e.ts", ["--arch", "topk"], { quick, progress }));
results.push(...await childRows("./e2e.ts", ["--arch", "jumprelu"], { quick, progress }));
results.push(...await childRows("./gate.ts", [], { quick, progress }));
results.push(...await benchPythonGate({ quick, progress }));
progress("policy evaluation with 1, 100 and 1000 rules");
results.push(...await benchPolicy({ quick }));
results.push(...await benchAlertSpool({ quick, progress }));
results.push(...await benchPolicyCompile({ quick, progress }));
results.push(...await benchScaleOut({ quick, progress }));
const traceRequests = quick ? 200 : 1000;
progress(
  `workbench: a ${traceRequests}-request trace to its first heatmap, a rule edit to its preview`,
);
const wb = await benchWorkbenchBrowser(traceRequests);
if (wb === null) progress("chromium not installed: skipping workbench/");
else {
  const row = (name: string, ms: number): BenchResult => ({
    name,
    tokens_per_s: 0,
    baseline_tokens_per_s: null,
    ratio: null,
    p50_ms: ms,
    p99_ms: null,
    rss_mb: null,
  });
  results.push(
    row(`workbench/open-${wb.requests}x64-to-first-heatmap`, wb.open_to_heatmap_ms),
    row("workbench/rule-edit-to-preview", wb.edit_to_preview_ms),
  );
}

const numpyVersion = (await runNumpy({ cases: [] }))?.numpy ?? null;
const report = {
  machine: machineRecord({
    peaks: peak,
    theoretical: readTheoreticalF32Peak({ measuredClock }),
    numpy: numpyVersion,
    numpyBlas,
    onnxruntime: ort.env.versions.node ?? "unknown",
    nativeKernels: await nativeKernelsStatus(),
    load: { start: loadStart, end: loadavg() },
    quick,
  }),
  results,
};
await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(outPath, JSON.stringify(report, null, 2) + "\n");
const stem = outPath.replace(/\.json$/, "");
await Deno.writeTextFile(`${stem}-encode.svg`, encodeChart(results));
await Deno.writeTextFile(`${stem}-latency.svg`, latencyChart(results));
console.log(machineHeader(report.machine).join("\n") + "\n");
console.log(resultsTable(results));
console.log(
  `\nmachine: ${report.machine.cpu}, ${report.machine.cores} cores, matmul peak ${
    peak.peak.toFixed(1)
  } GFLOP/s; ${
    ((performance.now() - benchStart) / 1000).toFixed(1)
  } s; written to ${outPath}, ${stem}-encode.svg and ${stem}-latency.svg`,
);
