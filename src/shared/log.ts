/**
 * Logging for the sidecar: one line per event on stderr, `level event
 * key=value ...`, with a per-event rate limit so that a flood of bad frames
 * cannot flood the log; suppressed lines are counted and reported.
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Fields attached to a log line. */
export type LogFields = Record<string, string | number | boolean | undefined>;

function fmt(v: string | number | boolean): string {
  const s = String(v);
  return /^[\w.:/@+-]+$/.test(s) ? s : JSON.stringify(s);
}

/**
 * A rate-limited line logger.
 *
 * @example
 * ```ts
 * const log = new Logger({ maxPerSecond: 20 });
 * log.warn("frame.rejected", { subject: "latentwatch.tap.v1.m.h.0", reason: "Lw-Dtype" });
 * ```
 */
export class Logger {
  readonly #max: number;
  readonly #write: (line: string) => void;
  #window = new Map<string, { start: number; count: number; suppressed: number }>();
  readonly quiet: boolean;

  constructor(
    opts: { maxPerSecond?: number; write?: (line: string) => void; quiet?: boolean } = {},
  ) {
    this.#max = opts.maxPerSecond ?? 20;
    this.#write = opts.write ?? ((line) => console.error(line));
    this.quiet = opts.quiet ?? false;
  }

  debug(event: string, fields?: LogFields): void {
    if (Deno.env.get("LATENTWATCH_DEBUG")) this.#log("debug", event, fields);
  }
  info(event: string, fields?: LogFields): void {
    if (!this.quiet) this.#log("info", event, fields);
  }
  warn(event: string, fields?: LogFields): void {
    this.#log("warn", event, fields);
  }
  error(event: string, fields?: LogFields): void {
    this.#log("error", event, fields);
  }

  /** Report every suppressed count now (at shutdown, so no burst goes unreported). */
  flush(): void {
    for (const [event, w] of this.#window) {
      if (w.suppressed > 0) this.#write(`warn log.suppressed event=${event} lines=${w.suppressed}`);
    }
    this.#window.clear();
  }

  #log(level: LogLevel, event: string, fields?: LogFields): void {
    const now = Date.now();
    let w = this.#window.get(event);
    if (!w || now - w.start >= 1000) {
      // report the closed windows of every event, not only this one's
      for (const [other, ow] of this.#window) {
        if (now - ow.start < 1000) continue;
        if (ow.suppressed > 0) {
          this.#write(`warn log.suppressed event=${other} lines=${ow.suppressed}`);
        }
        this.#window.delete(other);
      }
      w = { start: now, count: 0, suppressed: 0 };
      this.#window.set(event, w);
    }
    if (++w.count > this.#max) {
      w.suppressed++;
      return;
    }
    const parts = [level, event];
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (v !== undefined) parts.push(`${k}=${fmt(v)}`);
    }
    this.#write(parts.join(" "));
  }
}
