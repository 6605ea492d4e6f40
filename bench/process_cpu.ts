/**
 * CPU time of the end-to-end bench's processes over a row: the sidecar (this
 * process), the broker and the load generator. On the 2-core host the three
 * share, who used the cores says more about a row than its latencies alone:
 * at saturation the broker took more CPU than the sidecar (docs/performance-history.md,
 * "Twenty-fourth sitting"). The sidecar's own time also gives its CPU cost per
 * frame; that moves with the host too (1.8× between runs of one tree), so it
 * compares trees only over runs that alternate.
 *
 * The sidecar's time is `process.cpuUsage()` (microseconds, every thread);
 * another process's is its `utime + stime` in `/proc/<pid>/stat` (every
 * thread, in clock ticks of 10 ms: Linux's `USER_HZ` is 100): over a row of
 * 5 s, a process using a tenth of a core is read to about 2%. Elsewhere than
 * Linux those are null. The process ids are read at each mark: a broker
 * restarted within a row would mix two processes (the bench restarts none).
 *
 * @module
 */
import process from "node:process";

/** Linux reports process times to user space in ticks of 1/100 s (`USER_HZ`). */
const USER_HZ = 100;

/**
 * `utime + stime` in ms from the text of `/proc/<pid>/stat`, or null when it
 * is not one. The command name (field 2) may hold spaces and parentheses, so
 * fields are counted after its last `)`.
 *
 * @example
 * ```ts
 * import { statCpuMs } from "./process_cpu.ts";
 * statCpuMs("42 (a (b) c) S 1 42 42 0 -1 0 0 0 0 0 150 25 0 0 20 0 1 0"); // 1750
 * ```
 */
export function statCpuMs(stat: string): number | null {
  const close = stat.lastIndexOf(")");
  if (close < 0) return null;
  // after the name: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12
  const fields = stat.slice(close + 1).trim().split(/\s+/);
  const utime = Number(fields[11]), stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1000) / USER_HZ;
}

/** CPU time (ms, every thread) a process has used so far, or null when it cannot be read. */
export function processCpuMs(pid: number | null | undefined): number | null {
  if (pid === null || pid === undefined) return null;
  try {
    return statCpuMs(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return null; // not Linux, or the process is gone
  }
}

/** Who used the cores over a row: CPU seconds per wall second (1 = one core busy throughout). */
export interface CpuRecord {
  seconds: number;
  sidecar_cores: number;
  broker_cores: number | null;
  generator_cores: number | null;
  /** The sidecar's CPU time per frame it took in over the row, µs (when frames were counted). */
  sidecar_us_per_frame?: number;
}

/** A reading taken at a row's start (see {@linkcode CpuMeter.mark}). */
export interface CpuMark {
  readonly at: number;
  readonly selfUs: number;
  readonly broker: number | null;
  readonly generator: number | null;
}

/** The process ids a {@linkcode CpuMeter} reads besides its own; read at each mark. */
export interface CpuMeterTargets {
  broker: () => number | null | undefined;
  generator: () => number | null | undefined;
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/**
 * Reads the CPU time of this process, the broker and the generator at a
 * row's start and end.
 *
 * @example
 * ```ts
 * import { CpuMeter } from "./process_cpu.ts";
 * const meter = new CpuMeter({ broker: () => null, generator: () => null });
 * const mark = meter.mark();
 * // ... the row ...
 * meter.since(mark, 1000).sidecar_cores; // this process's cores over the row
 * ```
 */
export class CpuMeter {
  readonly #targets: CpuMeterTargets;

  constructor(targets: CpuMeterTargets) {
    this.#targets = targets;
  }

  /** Read every process now. */
  mark(): CpuMark {
    const u = process.cpuUsage();
    return {
      at: performance.now(),
      selfUs: u.user + u.system,
      broker: processCpuMs(this.#targets.broker()),
      generator: processCpuMs(this.#targets.generator()),
    };
  }

  /** What each process used since `mark`; `frames` the sidecar took in meanwhile, when known. */
  since(mark: CpuMark, frames?: number): CpuRecord {
    return CpuMeter.over([{ from: mark, to: this.mark() }], frames);
  }

  /**
   * What each process used over several spans of one row together (a row
   * measured in windows that alternate with another's): CPU time summed over
   * the spans ÷ their seconds summed. A process unreadable at any mark is null.
   */
  static over(spans: readonly { from: CpuMark; to: CpuMark }[], frames?: number): CpuRecord {
    let ms = 0, selfUs = 0;
    let broker: number | null = 0, generator: number | null = 0;
    const add = (sum: number | null, a: number | null, b: number | null) =>
      sum === null || a === null || b === null ? null : sum + (b - a);
    for (const { from, to } of spans) {
      ms += to.at - from.at;
      selfUs += to.selfUs - from.selfUs;
      broker = add(broker, from.broker, to.broker);
      generator = add(generator, from.generator, to.generator);
    }
    const seconds = ms / 1000;
    const share = (cpuMs: number | null) =>
      cpuMs === null || seconds <= 0 ? null : round3(cpuMs / 1000 / seconds);
    return {
      seconds: round3(seconds),
      sidecar_cores: seconds > 0 ? round3(selfUs / 1e6 / seconds) : 0,
      broker_cores: share(broker),
      generator_cores: share(generator),
      ...(frames !== undefined && frames > 0
        ? { sidecar_us_per_frame: Math.round((selfUs / frames) * 10) / 10 }
        : {}),
    };
  }
}

/**
 * `, CPU: sidecar 0.22 (150 µs/frame), broker 0.16, generator 0.12 cores`
 * for a progress line.
 *
 * @example
 * ```ts
 * import { cpuText } from "./process_cpu.ts";
 * cpuText({ seconds: 5, sidecar_cores: 0.5, broker_cores: null, generator_cores: 0.25 });
 * // ", CPU: sidecar 0.50, broker ?, generator 0.25 cores"
 * ```
 */
export function cpuText(c: CpuRecord | undefined): string {
  if (c === undefined) return "";
  const f = (v: number | null) => (v === null ? "?" : v.toFixed(2));
  const perFrame = c.sidecar_us_per_frame === undefined
    ? ""
    : ` (${c.sidecar_us_per_frame.toFixed(0)} µs/frame)`;
  return `, CPU: sidecar ${f(c.sidecar_cores)}${perFrame}, broker ${f(c.broker_cores)}, generator ${
    f(c.generator_cores)
  } cores`;
}
