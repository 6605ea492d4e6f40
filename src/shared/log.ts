/**
 * Logging for the sidecar: one line per event on stderr, with a per-event
 * rate limit so that a flood of bad frames cannot flood the log; suppressed
 * lines are counted and reported. Two formats (docs/operations.md):
 *
 * - `text` (default): `<ISO time> <level> <event> key=value ...`
 * - `json`: one object per line, `{"ts", "level", "event", "fields"}`
 *
 * chosen by the `format` option, else `$LATENTWATCH_LOG_FORMAT`
 * (`serve --log-format` sets it).
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Fields attached to a log line. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** The formats a {@linkcode Logger} writes. */
export const LOG_FORMATS = ["text", "json"] as const;

/** A log format: `text` or `json`. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** A log format that is neither `text` nor `json`. */
export class LogFormatError extends TypeError {
  constructor(where: string, found: string) {
    super(`${where}: expected one of ${LOG_FORMATS.join(", ")}, found '${found}'`);
    this.name = "LogFormatError";
  }
}

/**
 * Validate a log format named by `where` (a flag or a variable).
 *
 * @example
 * ```ts
 * parseLogFormat("json", "--log-format"); // "json"
 * ```
 */
export function parseLogFormat(value: string, where: string): LogFormat {
  if ((LOG_FORMATS as readonly string[]).includes(value)) return value as LogFormat;
  throw new LogFormatError(where, value);
}

/** The format `$LATENTWATCH_LOG_FORMAT` names (`text` when unset). */
function envFormat(): LogFormat {
  const v = Deno.env.get("LATENTWATCH_LOG_FORMAT");
  return v ? parseLogFormat(v, "$LATENTWATCH_LOG_FORMAT") : "text";
}

function fmt(v: string | number | boolean): string {
  const s = String(v);
  return /^[\w.:/@+-]+$/.test(s) ? s : JSON.stringify(s);
}

/** Options of a {@linkcode Logger}. */
export interface LoggerOptions {
  /** Lines per event and second before the rest are counted, not written (default 20). */
  maxPerSecond?: number;
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
  /** Drop `info` lines. */
  quiet?: boolean;
  /** `text` or `json` (default: `$LATENTWATCH_LOG_FORMAT`, else `text`). */
  format?: LogFormat;
  /**
   * Start text lines with their time (default: on when writing to stderr,
   * off for a `write` callback, which is how tests collect lines). JSON
   * lines always carry `ts`.
   */
  timestamps?: boolean;
  /** The clock (default `Date.now`). */
  now?: () => number;
}

/**
 * A rate-limited line logger.
 *
 * @example
 * ```ts
 * const log = new Logger({ maxPerSecond: 20 });
 * log.warn("frame.rejected", { subject: "latentwatch.tap.v1.m.h.0", reason: "Lw-Dtype" });
 * // 2026-12-03T20:15:21.123Z warn frame.rejected subject=latentwatch.tap.v1.m.h.0 reason=Lw-Dtype
 * ```
 */
export class Logger {
  readonly #max: number;
  readonly #write: (line: string) => void;
  readonly #now: () => number;
  readonly #timestamps: boolean;
  #window = new Map<string, { start: number; count: number; suppressed: number }>();
  readonly quiet: boolean;
  /** The format lines are written in. */
  readonly format: LogFormat;

  constructor(opts: LoggerOptions = {}) {
    this.#max = opts.maxPerSecond ?? 20;
    this.#write = opts.write ?? ((line) => console.error(line));
    this.quiet = opts.quiet ?? false;
    this.format = opts.format ?? envFormat();
    this.#timestamps = opts.timestamps ?? opts.write === undefined;
    this.#now = opts.now ?? Date.now;
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
      if (w.suppressed > 0) this.#emit("warn", "log.suppressed", { event, lines: w.suppressed });
    }
    this.#window.clear();
  }

  #log(level: LogLevel, event: string, fields?: LogFields): void {
    const now = this.#now();
    let w = this.#window.get(event);
    if (!w || now - w.start >= 1000) {
      // report the closed windows of every event, not only this one's
      for (const [other, ow] of this.#window) {
        if (now - ow.start < 1000) continue;
        if (ow.suppressed > 0) {
          this.#emit("warn", "log.suppressed", { event: other, lines: ow.suppressed });
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
    this.#emit(level, event, fields);
  }

  #emit(level: LogLevel, event: string, fields?: LogFields): void {
    const ts = new Date(this.#now()).toISOString();
    const defined = Object.entries(fields ?? {}).filter(([, v]) => v !== undefined) as [
      string,
      string | number | boolean,
    ][];
    if (this.format === "json") {
      this.#write(JSON.stringify({ ts, level, event, fields: Object.fromEntries(defined) }));
      return;
    }
    const parts = this.#timestamps ? [ts, level, event] : [level, event];
    for (const [k, v] of defined) parts.push(`${k}=${fmt(v)}`);
    this.#write(parts.join(" "));
  }
}
