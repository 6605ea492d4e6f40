/**
 * This CPU's theoretical f32 peak, the ceiling the bench's measured GEMM
 * peaks are read against: physical cores × f32 FLOP per cycle per core ×
 * clock, each found from Linux's own description of the CPU.
 *
 * - **cores**: distinct (`physical id`, `core id`) pairs in `/proc/cpuinfo`
 *   (SMT siblings share one core's FMA units), else the `processor` count.
 * - **FLOP per cycle per core** (f32, fused multiply-add = 2 FLOP), from the
 *   vendor, family, model and flags:
 *   - `avx512f`, AMD family 26 (Zen 5, full-width 512-bit datapath): 2 FMA
 *     pipes × 16 lanes × 2 = 64;
 *   - `avx512f`, AMD family 25 (Zen 4: 512-bit instructions run as two
 *     256-bit halves): 2 × 8 × 2 = 32;
 *   - `avx512f`, Intel (two 512-bit FMA ports, as Xeon Gold/Platinum have;
 *     one-port parts reach half): 2 × 16 × 2 = 64;
 *   - `avx2` + `fma`: 2 FMA × 8 lanes × 2 = 32, except AMD family 23 models
 *     below 0x30 (Zen/Zen+: 128-bit FMA units) at 16;
 *   - `avx` without `fma`: one 8-lane add and one 8-lane multiply = 16;
 *   - otherwise SSE: 4 lanes × (add + multiply) = 8.
 * - **clock**: `/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq` (the
 *   highest clock the kernel knows, boost included) when present, else the
 *   highest `cpu MHz` in `/proc/cpuinfo`: the nominal clock. Virtual machines
 *   often have no cpufreq, and their `cpu MHz` is the base clock, which a
 *   boosting core outruns (a Zen 4 guest reading 2.596 GHz ran at 3.7, and its
 *   measured GEMM beat a "peak" built on 2.596). So the clock is the higher of
 *   the nominal one and the one measured with every core busy
 *   (`bench/clock_probe.ts`), where the bench could measure it.
 *
 * @module
 */
import type { MeasuredClock } from "./clock_probe.ts";

/** What the peak is derived from, parsed from `/proc/cpuinfo`. */
export interface CpuInfo {
  vendor: string;
  family: number;
  model: number;
  modelName: string;
  flags: Set<string>;
  /** Physical cores (distinct physical id / core id), else logical processors. */
  cores: number;
  /** The highest `cpu MHz` of any processor; null when none is given. */
  mhz: number | null;
}

/** The theoretical f32 peak and how it was derived. */
export interface CpuPeak {
  gflops: number;
  cores: number;
  flop_per_cycle: number;
  /** The clock the peak assumes: the higher of `nominal_clock_ghz` and the measured one. */
  clock_ghz: number;
  /** Where `clock_ghz` came from: the measurement, `sysfs cpuinfo_max_freq` or `/proc/cpuinfo cpu MHz`. */
  clock_source: string;
  /** The clock Linux reports (cpufreq's maximum, else `cpu MHz`). */
  nominal_clock_ghz: number;
  /** The all-core clock measured by `bench/clock_probe.ts`; null where it was not measured. */
  measured_clock: MeasuredClock | null;
  /** The instruction set and datapath the FLOP/cycle figure assumes. */
  isa: string;
  /** One line: the product and the reason for each factor. */
  derivation: string;
}

/** `/proc/cpuinfo` text that does not describe a CPU the way Linux does. */
export class CpuInfoError extends Error {
  override name = "CpuInfoError";
}

/**
 * Parse `/proc/cpuinfo` text (`where` names it in errors).
 *
 * @example
 * ```ts
 * const info = parseCpuInfo("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n" +
 *   "model\t\t: 17\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2400.000\nflags\t\t: fma avx2 avx512f\n");
 * // info.family = 25, info.flags.has("avx512f") = true, info.cores = 1
 * ```
 */
export function parseCpuInfo(text: string, where = "/proc/cpuinfo"): CpuInfo {
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1].trim();
  const processors = text.match(/^processor\s*:/gm)?.length ?? 0;
  const flagsLine = field("flags");
  if (processors === 0 || flagsLine === undefined) {
    const found = text.split("\n").length;
    throw new CpuInfoError(
      `${where}:1:1: expected "processor : N" and "flags : …" lines, found ${
        processors === 0 ? "no processor line" : "no flags line"
      } in ${found} lines`,
      { cause: text.slice(0, 200) },
    );
  }
  const num = (name: string, hex = false) => {
    const v = field(name);
    return v === undefined ? NaN : (hex && v.startsWith("0x") ? parseInt(v, 16) : Number(v));
  };
  const ids = new Set<string>();
  for (const block of text.split(/\n\s*\n/)) {
    const phys = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
    const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
    if (phys !== undefined && core !== undefined) ids.add(`${phys}/${core}`);
  }
  const mhzAll = [...text.matchAll(/^cpu MHz\s*:\s*([\d.]+)/gm)].map((m) => Number(m[1]));
  return {
    vendor: field("vendor_id") ?? "unknown",
    family: num("cpu family"),
    model: num("model", true),
    modelName: field("model name") ?? "unknown",
    flags: new Set(flagsLine.split(/\s+/)),
    cores: ids.size > 0 ? ids.size : processors,
    mhz: mhzAll.length > 0 ? Math.max(...mhzAll) : null,
  };
}

/**
 * f32 FLOP per cycle per core (FMA counted as 2) and the datapath assumed;
 * the table is in this module's description.
 *
 * @example
 * ```ts
 * const info = parseCpuInfo("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n" +
 *   "model\t\t: 63\nflags\t\t: avx fma avx2\n");
 * flopPerCycleF32(info); // { flop: 32, isa: "AVX2+FMA: 2 FMA units × 8 f32 lanes × 2 FLOP" }
 * ```
 */
export function flopPerCycleF32(info: CpuInfo): { flop: number; isa: string } {
  const amd = info.vendor === "AuthenticAMD";
  const f = info.flags;
  if (f.has("avx512f")) {
    if (amd && info.family === 25) {
      return { flop: 32, isa: "AVX-512 on Zen 4 (512-bit ops as 2×256): 2 FMA × 8 lanes × 2 FLOP" };
    }
    const who = amd && info.family >= 26 ? "Zen 5, full 512-bit datapath" : "2 FMA ports";
    return { flop: 64, isa: `AVX-512 (${who}): 2 FMA × 16 f32 lanes × 2 FLOP` };
  }
  if (f.has("avx2") && f.has("fma")) {
    if (amd && info.family === 23 && info.model < 0x30) {
      return { flop: 16, isa: "AVX2+FMA on Zen/Zen+ (128-bit units): 2 FMA × 4 lanes × 2 FLOP" };
    }
    return { flop: 32, isa: "AVX2+FMA: 2 FMA units × 8 f32 lanes × 2 FLOP" };
  }
  if (f.has("avx")) return { flop: 16, isa: "AVX: 1 add + 1 multiply × 8 f32 lanes" };
  return { flop: 8, isa: "SSE: 1 add + 1 multiply × 4 f32 lanes" };
}

/** Options of {@linkcode theoreticalF32Peak}. */
export interface TheoreticalPeakOptions {
  /** `/proc/cpuinfo`'s text. */
  cpuinfo: string;
  /** `cpufreq/cpuinfo_max_freq` in kHz, when the kernel has cpufreq. */
  maxFreqKhz?: number | null;
  /** The all-core clock measured here (`bench/clock_probe.ts`), when it was. */
  measuredClock?: MeasuredClock | null;
}

/**
 * Cores × FLOP/cycle × clock, with the derivation as text.
 *
 * @example
 * ```ts
 * const peak = theoreticalF32Peak({
 *   cpuinfo: "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n" +
 *     "cpu MHz\t\t: 2000.000\nflags\t\t: fma avx2 avx512f\n",
 * });
 * // peak.gflops = 1 core × 64 × 2.0 GHz = 128
 * ```
 */
export function theoreticalF32Peak(opts: TheoreticalPeakOptions): CpuPeak {
  const info = parseCpuInfo(opts.cpuinfo);
  const { flop, isa } = flopPerCycleF32(info);
  let nominalGhz: number, nominalSource: string;
  if (opts.maxFreqKhz && opts.maxFreqKhz > 0) {
    nominalGhz = opts.maxFreqKhz / 1e6;
    nominalSource = "sysfs cpufreq cpuinfo_max_freq";
  } else if (info.mhz !== null && info.mhz > 0) {
    nominalGhz = info.mhz / 1000;
    nominalSource = "/proc/cpuinfo cpu MHz (no cpufreq: the base clock)";
  } else {
    throw new CpuInfoError(
      `/proc/cpuinfo:1:1: expected a "cpu MHz" line or cpufreq's cpuinfo_max_freq, found neither`,
    );
  }
  const measured = opts.measuredClock ?? null;
  let clockGhz = nominalGhz, clockSource = nominalSource;
  if (measured && measured.ghz > nominalGhz) {
    clockGhz = measured.ghz;
    clockSource = `measured: ${measured.method}; above the nominal ${
      nominalGhz.toFixed(3)
    } GHz from ${nominalSource}`;
  } else if (measured) {
    clockSource = `${nominalSource}; measured ${measured.ghz.toFixed(3)} GHz, not above it`;
  }
  const gflops = info.cores * flop * clockGhz;
  return {
    gflops,
    cores: info.cores,
    flop_per_cycle: flop,
    clock_ghz: clockGhz,
    clock_source: clockSource,
    nominal_clock_ghz: nominalGhz,
    measured_clock: measured,
    isa,
    derivation: `${info.cores} cores × ${flop} f32 FLOP/cycle (${isa}) × ${
      clockGhz.toFixed(3)
    } GHz (${clockSource}) = ${gflops.toFixed(1)} GFLOP/s`,
  };
}

/**
 * This machine's theoretical f32 peak from `/proc/cpuinfo`, cpufreq and,
 * when given, the clock measured here; null where there is no
 * `/proc/cpuinfo` (not Linux).
 *
 * @example
 * ```ts
 * const peak = readTheoreticalF32Peak(); // peak?.derivation
 * ```
 */
export function readTheoreticalF32Peak(
  opts: { measuredClock?: MeasuredClock | null } = {},
): CpuPeak | null {
  let cpuinfo: string;
  try {
    cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  } catch {
    return null;
  }
  let maxFreqKhz: number | null = null;
  try {
    const text = Deno.readTextFileSync("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    maxFreqKhz = Number(text.trim()) || null;
  } catch { /* no cpufreq (virtual machines): cpu MHz instead */ }
  return theoreticalF32Peak({ cpuinfo, maxFreqKhz, measuredClock: opts.measuredClock });
}
