/**
 * A sink's own `redact:` setting: a wrapper that redacts each alert's token
 * text (see `core/redact.ts`) before its sink renders, queues or spools it,
 * so nothing stricter-redacted ever reaches that sink's queue, spool or
 * destination. The alert's own redaction (the rule's and the monitor's) and
 * the sink's combine, the stricter winning.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import { redactAlert, type RedactOptions } from "../core/redact.ts";
import type { AlertSink, SinkStats } from "./sink.ts";

/**
 * `sink` behind redaction `opts`; `sink` itself when the mode is `none`.
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 * import { StdoutSink } from "./stdout/sink.ts";
 * const inner = new StdoutSink({ name: "stdout", maxQueue: 10, timeoutMs: 1000 }, { log: new Logger() });
 * const sink = redactingSink(inner, { mode: "hash", hashKey: "k" });
 * sink.name; // "stdout"
 * ```
 */
export function redactingSink(sink: AlertSink, opts: RedactOptions): AlertSink {
  return opts.mode === "none" ? sink : new RedactingSink(sink, opts);
}

/** An {@linkcode AlertSink} that redacts every alert before `inner` gets it. */
class RedactingSink implements AlertSink {
  readonly #inner: AlertSink;
  readonly #opts: RedactOptions;

  constructor(inner: AlertSink, opts: RedactOptions) {
    this.#inner = inner;
    this.#opts = opts;
  }

  get name(): string {
    return this.#inner.name;
  }

  get stats(): SinkStats {
    return this.#inner.stats;
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  submit(alert: Alert): boolean {
    return this.#inner.submit(redactAlert(alert, this.#opts));
  }

  drain(timeoutMs: number): Promise<number> {
    return this.#inner.drain(timeoutMs);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
