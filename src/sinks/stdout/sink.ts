/**
 * The stdout sink: one JSON line per alert (native JSON, OCSF or ECS), for
 * `kubectl logs`, a log shipper reading the container's output, or a pipe.
 * Lines are written in order, a batch per write, and never interleave: a
 * write that outlasts `timeoutMs` (a reader that stopped reading) is waited
 * for by the retry rather than issued twice, so no line is duplicated; after
 * `maxAttempts` the batch is counted as dropped (`retries_exhausted`) although
 * its bytes may still land once the reader resumes.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import {
  concat,
  OnceWriter,
  type Prepared,
  QueuedSink,
  raceSignal,
  type SinkDeps,
  writeAll,
} from "../base.ts";
import { type JsonFormat, renderLine } from "../formats.ts";

/** Settings of a {@linkcode StdoutSink}. */
export interface StdoutSinkOptions {
  /** Default `stdout`. */
  name?: string;
  /** Default `json` (the native alert record). */
  format?: JsonFormat;
  maxQueue: number;
  timeoutMs: number;
  /** Default 3. */
  maxAttempts?: number;
  /** Where lines go (default `Deno.stdout`); tests pass their own. */
  writer?: { write(p: Uint8Array): Promise<number> };
}

/** Lines written per write call at most: one syscall for a burst of alerts. */
const MAX_BATCH = 256;

/**
 * One JSON line per alert on stdout.
 *
 * @example
 * ```ts
 * import type { Alert } from "../../core/alert.ts";
 * declare const alert: Alert;
 * import { Logger } from "../../shared/log.ts";
 * const sink = new StdoutSink({ maxQueue: 1000, timeoutMs: 5000 }, { log: new Logger() });
 * sink.submit(alert);
 * await sink.drain(1000);
 * ```
 */
export class StdoutSink extends QueuedSink {
  readonly #format: JsonFormat;
  readonly #writer: { write(p: Uint8Array): Promise<number> };
  readonly #once = new OnceWriter<Prepared[]>();
  readonly #enc = new TextEncoder();

  constructor(opts: StdoutSinkOptions, deps: SinkDeps) {
    super({
      name: opts.name ?? "stdout",
      maxQueue: opts.maxQueue,
      timeoutMs: opts.timeoutMs,
      maxAttempts: opts.maxAttempts ?? 3,
      maxBatch: MAX_BATCH,
    }, deps);
    this.#format = opts.format ?? "json";
    this.#writer = opts.writer ?? Deno.stdout;
  }

  protected prepare(alert: Alert): Prepared {
    const payload = this.#enc.encode(renderLine(alert, this.#format) + "\n");
    return { alert, payload, bytes: payload.length };
  }

  protected deliver(batch: Prepared[], signal: AbortSignal): Promise<void> {
    return raceSignal(this.#once.write(batch, () => writeAll(this.#writer, concat(batch))), signal);
  }
}
