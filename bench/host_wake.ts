/**
 * The host's own wake-up lateness beside the latency rows: one small
 * process per CPU (`bench/host_wake.py`), pinned and at real-time priority
 * where permitted, sleeps to a 1 ms schedule and counts how late each wake-up
 * comes. The machine's own processes can hardly delay a real-time thread, so
 * what it counts is the host's (a virtual CPU descheduled, or slow to wake
 * from idle) and the kernel's own (interrupts, and network processing it
 * does without preemption). A frame's path wakes three processes (generator, broker,
 * sidecar), so when a share s of wake-ups is more than 2 ms late, roughly 3s
 * of frames can be too, whatever the sidecar does (docs/performance-history.md,
 * "Twenty-third sitting").
 *
 * @module
 */
import { readLines } from "./e2e_load.ts";

/** One 100 ms window of one CPU's meter, as `host_wake.py` prints it. */
export interface HostWakeWindow {
  /** Epoch ms at the window's end (the host clock `Date.now()` reads). */
  t: number;
  cpu: number;
  wakes: number;
  /** Wake-ups more than 0.5, 1, 2 and 5 ms late. */
  gt05: number;
  gt1: number;
  gt2: number;
  gt5: number;
  /** The latest wake-up of the window, ms. */
  max: number;
}

/** What a row records about the host over its seconds (`host_wake`). */
export interface HostWakeSummary {
  /** `fifo`: real-time priority (the host's lateness); `other`: not permitted, so contention counts too. */
  policy: "fifo" | "other";
  period_ms: number;
  cpus: number;
  wakes: number;
  /** Shares of wake-ups later than 1, 2 and 5 ms, in percent. */
  late_over_1ms_pct: number;
  late_over_2ms_pct: number;
  late_over_5ms_pct: number;
  /** The latest wake-up on any CPU, ms. */
  max_late_ms: number;
}

/**
 * Sum the windows that ended within (`from`, `to` + one window], epoch ms;
 * null when none did.
 *
 * @example
 * ```ts
 * import { summarizeHostWake } from "./host_wake.ts";
 * const w = { cpu: 0, wakes: 100, gt05: 4, gt1: 2, gt2: 1, gt5: 0, max: 2.5 };
 * const s = summarizeHostWake([{ ...w, t: 1100 }, { ...w, t: 1200, max: 3 }], {
 *   from: 1000, to: 1200, policy: "fifo", periodMs: 1,
 * });
 * // s.wakes 200, s.late_over_1ms_pct 2, s.late_over_2ms_pct 1, s.max_late_ms 3
 * ```
 */
export function summarizeHostWake(
  windows: readonly HostWakeWindow[],
  opts: { from: number; to: number; policy: "fifo" | "other"; periodMs: number },
): HostWakeSummary | null {
  const inside = windows.filter((w) => w.t > opts.from && w.t <= opts.to + 100);
  const wakes = inside.reduce((n, w) => n + w.wakes, 0);
  if (wakes === 0) return null;
  const share = (k: "gt1" | "gt2" | "gt5") =>
    Math.round((10000 * inside.reduce((n, w) => n + w[k], 0)) / wakes) / 100;
  return {
    policy: opts.policy,
    period_ms: opts.periodMs,
    cpus: new Set(inside.map((w) => w.cpu)).size,
    wakes,
    late_over_1ms_pct: share("gt1"),
    late_over_2ms_pct: share("gt2"),
    late_over_5ms_pct: share("gt5"),
    max_late_ms: Math.max(...inside.map((w) => w.max)),
  };
}

/**
 * The meters, one per CPU, running until {@linkcode HostWakeMeter.stop} (or
 * `maxSeconds`, whichever comes first).
 *
 * @example
 * ```ts
 * import { HostWakeMeter } from "./host_wake.ts";
 * const meter = await HostWakeMeter.start({ maxSeconds: 5 });
 * const from = Date.now();
 * await new Promise((r) => setTimeout(r, 500));
 * console.log(meter?.summary(from, Date.now()));
 * await meter?.stop();
 * ```
 */
export class HostWakeMeter {
  readonly #children: Deno.ChildProcess[];
  readonly #windows: HostWakeWindow[] = [];
  readonly #reading: Promise<void>[];
  readonly policy: "fifo" | "other";
  readonly periodMs: number;

  private constructor(
    children: Deno.ChildProcess[],
    readers: AsyncGenerator<string>[],
    policy: "fifo" | "other",
    periodMs: number,
  ) {
    this.#children = children;
    this.policy = policy;
    this.periodMs = periodMs;
    this.#reading = readers.map(async (lines) => {
      for await (const line of lines) {
        if (line.startsWith("{")) this.#windows.push(JSON.parse(line) as HostWakeWindow);
      }
    });
  }

  /**
   * Start one meter per CPU; null (with the reason in `onSkip`) when python3
   * cannot run it.
   */
  static async start(
    opts: {
      periodMs?: number;
      maxSeconds?: number;
      cpus?: number;
      python?: string;
      onSkip?: (why: string) => void;
    } = {},
  ): Promise<HostWakeMeter | null> {
    const periodMs = opts.periodMs ?? 1;
    const cpus = opts.cpus ?? navigator.hardwareConcurrency;
    const script = new URL("./host_wake.py", import.meta.url).pathname;
    const children: Deno.ChildProcess[] = [];
    const readers: AsyncGenerator<string>[] = [];
    const policies = new Set<string>();
    try {
      for (let cpu = 0; cpu < cpus; cpu++) {
        const child = new Deno.Command(opts.python ?? "python3", {
          args: [script, String(cpu), String(periodMs), String(opts.maxSeconds ?? 3600)],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        children.push(child);
        const lines = readLines(child.stdout);
        readers.push(lines);
        const first = await lines.next();
        const ready = first.done ? null : JSON.parse(first.value);
        if (!ready?.ready) {
          const err = (await new Response(child.stderr).text()).trim();
          throw new Error(`host_wake.py on CPU ${cpu}: ${err.split("\n").pop() || "no output"}`);
        }
        policies.add(ready.policy);
      }
    } catch (err) {
      for (const c of children) killQuietly(c);
      opts.onSkip?.((err as Error).message);
      return null;
    }
    return new HostWakeMeter(children, readers, policies.has("other") ? "other" : "fifo", periodMs);
  }

  /** The windows that ended within (`from`, `to`], epoch ms (see {@linkcode summarizeHostWake}). */
  summary(from: number, to: number): HostWakeSummary | null {
    return summarizeHostWake(this.#windows, {
      from,
      to,
      policy: this.policy,
      periodMs: this.periodMs,
    });
  }

  /** Every window so far (for tests and plots). */
  get windows(): readonly HostWakeWindow[] {
    return this.#windows;
  }

  /** Stop the meters and wait for them. */
  async stop(): Promise<void> {
    for (const c of this.#children) killQuietly(c);
    await Promise.all(this.#children.map((c) => c.status));
    await Promise.allSettled(this.#reading);
    for (const c of this.#children) await c.stderr.cancel().catch(() => {});
  }
}

function killQuietly(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
}

/**
 * The row's `host_wake` from `wall0` (epoch ms) to now; nothing without a meter.
 *
 * @example
 * ```ts
 * import { hostWakeOver } from "./host_wake.ts";
 * hostWakeOver(null, Date.now()); // {}: no meter, no field
 * ```
 */
export function hostWakeOver(
  meter: HostWakeMeter | null,
  wall0: number,
): { host_wake?: HostWakeSummary } {
  const s = meter?.summary(wall0, Date.now());
  return s ? { host_wake: s } : {};
}

/**
 * `, host: 0.4% of wake-ups over 1 ms late (0.1% over 2), latest 3.1 ms` for a
 * progress line; empty without a summary.
 *
 * @example
 * ```ts
 * import { hostWakeText } from "./host_wake.ts";
 * hostWakeText(undefined); // ""
 * ```
 */
export function hostWakeText(s: HostWakeSummary | undefined): string {
  return s === undefined
    ? ""
    : `, host: ${s.late_over_1ms_pct}% of wake-ups over 1 ms late (${s.late_over_2ms_pct}% over 2), latest ${
      s.max_late_ms.toFixed(1)
    } ms${s.policy === "fifo" ? "" : " (not real-time: contention counts too)"}`;
}
