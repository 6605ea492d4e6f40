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
 *   highest `cpu MHz` in `/proc/cpuinfo`. Virtual machines often have no
 *   cpufreq, and their `cpu MHz` is the nominal (base) clock: a core boosting
 *   above it can then measure more than this "peak".
 *
 * @module
 */

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
  clock_ghz: number;
  /** Where the clock came from: `sysfs cpuinfo_max_freq` or `/proc/cpuinfo cpu MHz`. */
  clock_source: string;
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
  let clockGhz: number, clockSource: string;
  if (opts.maxFreqKhz && opts.maxFreqKhz > 0) {
    clockGhz = opts.maxFreqKhz / 1e6;
    clockSource = "sysfs cpufreq cpuinfo_max_freq";
  } else if (info.mhz !== null && info.mhz > 0) {
    clockGhz = info.mhz / 1000;
    clockSource = "/proc/cpuinfo cpu MHz (no cpufreq: nominal clock, boost not included)";
  } else {
    throw new CpuInfoError(
      `/proc/cpuinfo:1:1: expected a "cpu MHz" line or cpufreq's cpuinfo_max_freq, found neither`,
    );
  }
  const gflops = info.cores * flop * clockGhz;
  return {
    gflops,
    cores: info.cores,
    flop_per_cycle: flop,
    clock_ghz: clockGhz,
    clock_source: clockSource,
    isa,
    derivation: `${info.cores} cores × ${flop} f32 FLOP/cycle (${isa}) × ${
      clockGhz.toFixed(3)
    } GHz (${clockSource}) = ${gflops.toFixed(1)} GFLOP/s`,
  };
}

/**
 * This machine's theoretical f32 peak from `/proc/cpuinfo` and cpufreq;
 * null where there is no `/proc/cpuinfo` (not Linux).
 *
 * @example
 * ```ts
 * const peak = readTheoreticalF32Peak(); // peak?.derivation
 * ```
 */
export function readTheoreticalF32Peak(): CpuPeak | null {
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
  return theoreticalF32Peak({ cpuinfo, maxFreqKhz });
}
