/**
 * The bench's `machine` record: what ran the bench (CPU, cores, memory,
 * versions, load), the BLAS kernel NumPy's OpenBLAS chose, the measured GEMM
 * peaks of each engine and the CPU's theoretical f32 peak beside them, and
 * the header lines the bench prints above its table.
 *
 * @module
 */
import type { NativeKernelsStatus } from "../src/runtime/native_kernels.ts";
import { cpus, totalmem } from "node:os";
import type { CpuPeak } from "./cpu_peak.ts";
import type { NumpyBlas } from "./numpy_child.ts";

/** The measured f32 GEMM peaks (GFLOP/s), one row per shape. */
export interface MeasuredPeaks {
  onnxruntime: number;
  numpy: number | null;
  /** The best of every engine and shape: what `pct_of_peak` divides by. */
  peak: number;
  shapes: { shape: string; onnxruntime: number; numpy: number | null }[];
}

/** Options of {@linkcode machineRecord}. */
export interface MachineRecordOptions {
  peaks: MeasuredPeaks;
  theoretical: CpuPeak | null;
  numpy: string | null;
  numpyBlas: NumpyBlas | null;
  onnxruntime: string;
  /** Whether the candidate encoder's native CPU kernels loaded here, and if not, why. */
  nativeKernels: NativeKernelsStatus;
  load: { start: number[] | null; end: number[] | null };
  quick: boolean;
}

/** `peak` ÷ the theoretical peak, or null without one. */
function ofTheoretical(gflops: number | null, theoretical: CpuPeak | null): number | null {
  return gflops === null || !theoretical ? null : gflops / theoretical.gflops;
}

/**
 * The results file's `machine` record.
 *
 * @example
 * ```ts
 * const m = machineRecord({
 *   peaks: { onnxruntime: 120, numpy: 280, peak: 280, shapes: [] },
 *   theoretical: null,
 *   numpy: "2.4.6",
 *   numpyBlas: null,
 *   onnxruntime: "1.30.0",
 *   nativeKernels: { available: false, reason: "no C compiler" },
 *   load: { start: null, end: null },
 *   quick: true,
 * });
 * // m.matmul_peak_gflops.peak = 280
 * ```
 */
export function machineRecord(opts: MachineRecordOptions) {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const m = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    if (m) cpu = m[1];
  } catch { /* not Linux */ }
  const { peaks, theoretical } = opts;
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    os: `${Deno.build.os}-${Deno.build.arch}`,
    deno: Deno.version.deno,
    onnxruntime: opts.onnxruntime,
    numpy: opts.numpy,
    /** NumPy's BLAS as the child found it at run time, forcing variables removed. */
    numpy_blas: opts.numpyBlas,
    native_kernels: opts.nativeKernels,
    provider: "cpu",
    matmul_peak_gflops: {
      ...peaks,
      /** Each measured peak ÷ the theoretical peak. */
      of_theoretical: {
        onnxruntime: ofTheoretical(peaks.onnxruntime, theoretical),
        numpy: ofTheoretical(peaks.numpy, theoretical),
        peak: ofTheoretical(peaks.peak, theoretical),
      },
    },
    theoretical_peak_gflops: theoretical,
    loadavg_start: opts.load.start,
    loadavg_end: opts.load.end,
    quick: opts.quick,
    date: new Date().toISOString(),
  };
}

/** The record {@linkcode machineRecord} returns. */
export type MachineRecord = ReturnType<typeof machineRecord>;

/**
 * The lines printed above the table: NumPy's BLAS kernel, the measured peaks
 * and the theoretical one.
 *
 * @example
 * ```ts
 * declare const m: MachineRecord;
 * console.log(machineHeader(m).join("\n"));
 * ```
 */
export function machineHeader(m: MachineRecord): string[] {
  const pct = (v: number | null) => v === null ? "—" : `${(100 * v).toFixed(0)}%`;
  const blas = m.numpy_blas;
  const p = m.matmul_peak_gflops;
  const t = m.theoretical_peak_gflops;
  return [
    `NumPy ${m.numpy ?? "—"}: BLAS ${blas?.library ?? "—"} ${blas?.version ?? ""}, kernel ${
      blas?.corename ?? "—"
    }, ${
      blas?.threads ?? "—"
    } threads (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment)`,
    `measured f32 GEMM peak: onnxruntime ${p.onnxruntime.toFixed(1)} GFLOP/s (${
      pct(p.of_theoretical.onnxruntime)
    } of theoretical), NumPy ${p.numpy?.toFixed(1) ?? "—"} GFLOP/s (${
      pct(p.of_theoretical.numpy)
    }); best ${p.peak.toFixed(1)} GFLOP/s = the "% of peak" denominator`,
    `theoretical f32 peak: ${t ? t.derivation : "— (no /proc/cpuinfo)"}`,
    ...((p.of_theoretical.peak ?? 0) > 1
      ? [
        `WARNING: a measured GEMM beat the theoretical peak (${
          pct(p.of_theoretical.peak)
        }): its clock or FLOP/cycle is too low for this CPU`,
      ]
      : []),
    `native CPU kernels (int8-candidates/native): ${
      m.native_kernels.available
        ? `loaded (${m.native_kernels.library})`
        : `not used: ${m.native_kernels.reason}`
    }`,
  ];
}
