/**
 * The clock this machine's cores run at while all of them are busy,
 * measured (`bench/clock_probe.c`): virtual machines report only their
 * nominal clock in `/proc/cpuinfo`, and a core boosting above it makes a
 * measured GEMM outrun a "theoretical" peak built on that clock. The probe
 * times chains of dependent register adds (one cycle each) on every logical
 * processor at once, each window started together; `bench/cpu_peak.ts`
 * takes the higher of this and the nominal clock.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** The measured all-core clock and how it was measured. */
export interface MeasuredClock {
  /** The best window of any thread, in GHz: adds per second, one add a cycle. */
  ghz: number;
  /** Each thread's best window, GHz. */
  per_thread_ghz: number[];
  /** One line: what ran and how the figure was taken. */
  method: string;
}

/** The probe could not be built or run, or printed what it should not. */
export class ClockProbeError extends Error {
  override name = "ClockProbeError";
}

/** Options of {@linkcode parseClockProbe}. */
export interface ClockProbeRun {
  /** The probe's standard output. */
  stdout: string;
  threads: number;
  windows: number;
  loops: number;
}

/** Adds per loop in `clock_probe.c` (its `.rept`). */
const ADDS_PER_LOOP = 1000;

/**
 * Read the probe's output: one `GHz sum` line per thread, each sum the
 * chain's length (a wrong sum means the chain did not run as written).
 *
 * @example
 * ```ts
 * const clock = parseClockProbe({
 *   stdout: "3.6950 20000000\n3.6911 20000000\n", threads: 2, windows: 20, loops: 20000,
 * });
 * // clock.ghz = 3.695
 * ```
 */
export function parseClockProbe(run: ClockProbeRun): MeasuredClock {
  const lines = run.stdout.trim().split("\n").filter((l) => l.length > 0);
  if (lines.length !== run.threads) {
    throw new ClockProbeError(
      `clock_probe:stdout:1: expected ${run.threads} lines (one per thread), found ${lines.length}`,
    );
  }
  const expectedSum = run.loops * ADDS_PER_LOOP;
  const perThread = lines.map((line, i) => {
    const m = /^(\d+(?:\.\d+)?) (\d+)$/.exec(line);
    if (!m) {
      throw new ClockProbeError(
        `clock_probe:stdout:${i + 1}: expected "GHZ SUM", found ${JSON.stringify(line)}`,
      );
    }
    const [ghz, sum] = [Number(m[1]), Number(m[2])];
    if (sum !== expectedSum) {
      throw new ClockProbeError(
        `clock_probe:stdout:${i + 1}: expected the chain's sum ${expectedSum}, found ${sum}`,
      );
    }
    if (!(ghz > 0.1 && ghz < 10)) {
      throw new ClockProbeError(
        `clock_probe:stdout:${i + 1}: expected a clock between 0.1 and 10 GHz, found ${ghz}`,
      );
    }
    return ghz;
  });
  return {
    ghz: Math.max(...perThread),
    per_thread_ghz: perThread,
    method: `${run.threads} threads at once, each the best of ${run.windows} windows of ${
      run.loops * ADDS_PER_LOOP
    } dependent register adds (one cycle each)`,
  };
}

/** Options of {@linkcode measureClock}. */
export interface MeasureClockOptions {
  /** Threads run at once; default every logical processor. */
  threads?: number;
  /** Windows per thread (the best counts); default 20. */
  windows?: number;
  /** Loops of 1000 adds per window; default 20,000 (about 6 ms at 3.5 GHz). */
  loops?: number;
  /** The C compiler; default `$CC`, else `cc`. */
  cc?: string;
}

/**
 * Compile and run the probe (x86-64 only); null where it cannot run here
 * (another architecture, no C compiler), the reason in `onSkip`.
 *
 * @example
 * ```ts
 * const clock = await measureClock({ windows: 5 });
 * // clock?.ghz: e.g. 3.69 on a Zen 4 whose /proc/cpuinfo says 2.596
 * ```
 */
export async function measureClock(
  opts: MeasureClockOptions & { onSkip?: (why: string) => void } = {},
): Promise<MeasuredClock | null> {
  if (Deno.build.arch !== "x86_64") {
    opts.onSkip?.(`the clock probe is x86-64 assembly; this is ${Deno.build.arch}`);
    return null;
  }
  const threads = opts.threads ?? navigator.hardwareConcurrency;
  const windows = opts.windows ?? 20;
  const loops = opts.loops ?? 20_000;
  const cc = opts.cc ?? Deno.env.get("CC") ?? "cc";
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-clock-" });
  try {
    const exe = `${dir}/clock_probe`;
    const source = fileURLToPath(new URL("./clock_probe.c", import.meta.url));
    let built: Deno.CommandOutput;
    try {
      built = await new Deno.Command(cc, {
        args: ["-O2", "-pthread", "-o", exe, source],
        stdout: "null",
        stderr: "piped",
      }).output();
    } catch (e) {
      opts.onSkip?.(`no C compiler to build the clock probe (\`${cc}\`: ${(e as Error).message})`);
      return null;
    }
    if (!built.success) {
      throw new ClockProbeError(
        `compiling bench/clock_probe.c with \`${cc}\` failed (exit ${built.code}): ${
          new TextDecoder().decode(built.stderr).trim().split("\n").slice(0, 3).join(" | ")
        }`,
      );
    }
    const ran = await new Deno.Command(exe, {
      args: [String(threads), String(windows), String(loops)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!ran.success) {
      throw new ClockProbeError(
        `clock_probe exited ${ran.code}: ${new TextDecoder().decode(ran.stderr).trim()}`,
      );
    }
    return parseClockProbe({
      stdout: new TextDecoder().decode(ran.stdout),
      threads,
      windows,
      loops,
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
