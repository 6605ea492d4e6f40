/**
 * Start-up and shutdown as a list of named steps, after Falco's
 * `run_steps` / `teardown_steps`: each step opens one thing and knows how to
 * close it; the steps start in order and stop in reverse, on shutdown and
 * when a later step fails, and every stop runs even when another one fails.
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 *
 * const ctx: { port?: Deno.Listener } = {};
 * const started = await startSteps([
 *   {
 *     name: "listener",
 *     start: (c) => void (c.port = Deno.listen({ port: 0 })),
 *     stop: (c) => c.port?.close(),
 *   },
 * ], ctx, { log: new Logger() });
 * const failures = await started.stop(); // [] when every stop succeeded
 * ```
 *
 * @module
 */
import type { Logger } from "../shared/log.ts";

/** One named step of start-up, with its undo. */
export interface Step<C> {
  /** Short, stable name used in the log (`startup.step name=…`). */
  name: string;
  /** Open what this step opens; may record it in `ctx` for later steps. */
  start(ctx: C): unknown;
  /**
   * Undo {@linkcode Step.start}. It also runs when this step's own start
   * threw, so it must cope with a start that did not finish: close what is
   * in `ctx` and skip what is not.
   */
  stop?(ctx: C): unknown;
}

/** A stop that threw, with the step it belongs to. */
export interface StepFailure {
  step: string;
  error: unknown;
}

/** Options for {@linkcode startSteps} and {@linkcode stopSteps}. */
export interface StepsOptions {
  /** Where each step's timing and each failure are logged. */
  log: Logger;
  /**
   * Clock in milliseconds, for the `ms=` of each step.
   * @default performance.now
   */
  now?: () => number;
  /**
   * Stops the start-up: checked before each step, and a step that throws
   * once it has aborted (a wait it passed the signal to) is a stop, not a
   * failure. Either way the started steps stop in reverse and
   * {@linkcode startSteps} throws {@linkcode StartupAbortedError}.
   */
  signal?: AbortSignal;
}

/** Steps that started, to be stopped together. */
export interface StartedSteps {
  /** Names of the started steps, in start order. */
  readonly names: readonly string[];
  /**
   * Stop every started step in reverse order (once; later calls return the
   * same promise). Resolves with the stops that threw, each logged.
   */
  stop(): Promise<StepFailure[]>;
}

/**
 * A step's start threw. `cause` is what it threw; the steps started before
 * it (and its own stop) have run by the time this is thrown.
 *
 * @example
 * ```ts
 * const err = new StartupStepError("nats", new Error("connection refused"));
 * err.message; // 'start-up step "nats" failed: connection refused'
 * ```
 */
export class StartupStepError extends Error {
  override name = "StartupStepError";
  /** Name of the step that failed. */
  readonly step: string;
  constructor(step: string, cause: unknown) {
    super(`start-up step "${step}" failed: ${messageOf(cause)}`, { cause });
    this.step = step;
  }
}

/**
 * The start-up was stopped by its signal (SIGTERM during start-up) before
 * or during step `step`; the steps started before it have been stopped.
 *
 * @example
 * ```ts
 * const err = new StartupAbortedError("nats");
 * err.message; // 'start-up stopped at step "nats"'
 * ```
 */
export class StartupAbortedError extends Error {
  override name = "StartupAbortedError";
  constructor(readonly step: string, cause?: unknown) {
    super(`start-up stopped at step "${step}"`, { cause });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Stop `steps` in reverse order, every one even when an earlier stop throws.
 * Logs `shutdown.step name=… ms=…` for each and `shutdown.step_failed
 * name=… error=…` for each that throws; resolves with those failures.
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 *
 * const order: string[] = [];
 * const failures = await stopSteps([
 *   { name: "a", start: () => {}, stop: () => void order.push("a") },
 *   { name: "b", start: () => {}, stop: () => void order.push("b") },
 * ], {}, { log: new Logger() });
 * // order: ["b", "a"], failures: []
 * ```
 */
export async function stopSteps<C>(
  steps: readonly Step<C>[],
  ctx: C,
  opts: StepsOptions,
): Promise<StepFailure[]> {
  const now = opts.now ?? (() => performance.now());
  const failures: StepFailure[] = [];
  for (const step of [...steps].reverse()) {
    if (!step.stop) continue;
    const t0 = now();
    try {
      await step.stop(ctx);
      opts.log.debug("shutdown.step", { name: step.name, ms: Math.round(now() - t0) });
    } catch (error) {
      failures.push({ step: step.name, error });
      opts.log.error("shutdown.step_failed", { name: step.name, error: messageOf(error) });
    }
  }
  return failures;
}

/**
 * Start `steps` in order, logging `startup.step name=… ms=…` for each. When
 * one throws, the started steps and the failing one are stopped in reverse
 * (see {@linkcode stopSteps}) and a {@linkcode StartupStepError} naming the
 * step is thrown, with the original error as its `cause`; when `signal`
 * aborts, the same happens with a {@linkcode StartupAbortedError}.
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 *
 * const started = await startSteps([
 *   { name: "greet", start: () => console.log("hello"), stop: () => console.log("bye") },
 * ], {}, { log: new Logger() });
 * await started.stop();
 * ```
 */
export async function startSteps<C>(
  steps: readonly Step<C>[],
  ctx: C,
  opts: StepsOptions,
): Promise<StartedSteps> {
  const now = opts.now ?? (() => performance.now());
  const started: Step<C>[] = [];
  for (const step of steps) {
    if (opts.signal?.aborted) {
      opts.log.info("startup.stopped", { before: step.name });
      await stopSteps(started, ctx, opts);
      throw new StartupAbortedError(step.name);
    }
    const t0 = now();
    started.push(step);
    try {
      await step.start(ctx);
    } catch (err) {
      if (opts.signal?.aborted) {
        opts.log.info("startup.stopped", { during: step.name });
        await stopSteps(started, ctx, opts);
        throw new StartupAbortedError(step.name, err);
      }
      opts.log.error("startup.step_failed", { name: step.name, error: messageOf(err) });
      await stopSteps(started, ctx, opts);
      throw new StartupStepError(step.name, err);
    }
    opts.log.info("startup.step", { name: step.name, ms: Math.round(now() - t0) });
  }
  let stopping: Promise<StepFailure[]> | null = null;
  return {
    names: started.map((s) => s.name),
    stop: () => stopping ??= stopSteps(started, ctx, opts),
  };
}
