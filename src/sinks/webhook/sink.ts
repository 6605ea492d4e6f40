/**
 * The webhook sink: one HTTP POST per alert, either the alert as a JSON
 * document (native, OCSF or ECS; optional headers such as an
 * `Authorization`) or a Splunk HTTP Event Collector event
 * (`{"time", "host", "source", "sourcetype", "index"?, "event"}` with
 * `Authorization: Splunk <token>`).
 *
 * Answers: 2xx delivered; 429, 5xx, a network error or a timeout retried
 * with capped exponential backoff (a `Retry-After` in seconds is honoured, up
 * to the cap) until `maxAttempts`, then dropped as `retries_exhausted`; any
 * other status (400, 401, 403, 404, a redirect not followed…) is dropped at
 * once as `rejected`, since sending the same body again cannot fix it.
 *
 * Delivery is at least once: a retry, or the same alert raised again (a
 * trace replayed twice), is POSTed again. Each POST carries the alert id as
 * `Idempotency-Key` (and `Lw-Alert-Id`), the same on every delivery of one
 * alert, so the receiver can deduplicate.
 *
 * @module
 */
import type { Alert } from "../../core/alert.ts";
import { type Prepared, QueuedSink, type SinkDeps } from "../base.ts";
import type { JsonFormat } from "../formats.ts";
import { PermanentDeliveryError } from "../queue.ts";
import { renderPayload, splunkHecEvent } from "../renderings.ts";

export { splunkHecEvent };

/** Body shapes a webhook can send. */
export const WEBHOOK_SHAPES = ["json", "splunk-hec"] as const;
/** A webhook body shape. */
export type WebhookShape = (typeof WEBHOOK_SHAPES)[number];

/** Splunk HEC event fields besides `event` and `time`. */
export interface SplunkHecOptions {
  /** HEC token (sent as `Authorization: Splunk <token>`). */
  token: string;
  /** Default: the deps' hostname. */
  host?: string;
  /** Default `latentwatch`. */
  source?: string;
  /** Default `latentwatch:alert`. */
  sourcetype?: string;
  index?: string;
}

/** Settings of a {@linkcode WebhookSink}. */
export interface WebhookSinkOptions {
  /** Default `webhook:<url host>`. */
  name?: string;
  url: string;
  /** Default `json`. */
  shape?: WebhookShape;
  /** Rendering of the body (`json` shape) or of the HEC `event` (default `json`). */
  format?: JsonFormat;
  /** Extra request headers (e.g. `Authorization: Bearer …`). */
  headers?: Record<string, string>;
  /** Required for the `splunk-hec` shape. */
  splunk?: SplunkHecOptions;
  /** Bodies larger than this are dropped as `too_large` (default 1 MiB). */
  maxMessageBytes?: number;
  maxQueue: number;
  /** Limit of one POST, answer included. */
  timeoutMs: number;
  /** Default 5. */
  maxAttempts?: number;
  /** Default 200 and 10000. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** POSTs in flight at once (default 4). */
  concurrency?: number;
}

/** A webhook is misconfigured (a Splunk shape without its token, a URL that is not http(s)). */
export class WebhookConfigError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "WebhookConfigError";
  }
}

/** Answers worth sending again: rate limited, or a server-side failure. */
function retryable(status: number): boolean {
  return status === 429 || status >= 500;
}

/** `Retry-After` as ms: delta-seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * POSTs each alert to an HTTP endpoint.
 *
 * @example
 * ```ts
 * import type { Alert } from "../../core/alert.ts";
 * declare const alert: Alert;
 * import { Logger } from "../../shared/log.ts";
 * const sink = new WebhookSink({
 *   url: "https://splunk.internal:8088/services/collector/event",
 *   shape: "splunk-hec",
 *   splunk: { token: Deno.env.get("SPLUNK_TOKEN")!, index: "ai" },
 *   maxQueue: 10000,
 *   timeoutMs: 5000,
 * }, { log: new Logger() });
 * sink.submit(alert);
 * ```
 */
export class WebhookSink extends QueuedSink<string> {
  readonly #o: WebhookSinkOptions;
  readonly #headers: Headers;
  readonly #host: string;
  readonly #dec = new TextDecoder();

  constructor(opts: WebhookSinkOptions, deps: SinkDeps) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new WebhookConfigError(`expected an http(s) URL, found ${JSON.stringify(opts.url)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new WebhookConfigError(`expected an http(s) URL, found ${JSON.stringify(opts.url)}`);
    }
    const shape = opts.shape ?? "json";
    if (shape === "splunk-hec" && !opts.splunk?.token) {
      throw new WebhookConfigError(
        `expected a Splunk HEC token for the splunk-hec shape of ${url.host}, found none`,
      );
    }
    super({
      name: opts.name ?? `webhook:${url.host}`,
      maxQueue: opts.maxQueue,
      timeoutMs: opts.timeoutMs,
      maxAttempts: opts.maxAttempts ?? 5,
      initialBackoffMs: opts.initialBackoffMs ?? 200,
      maxBackoffMs: opts.maxBackoffMs ?? 10_000,
      concurrency: opts.concurrency ?? 4,
      maxMessageBytes: opts.maxMessageBytes ?? 1024 * 1024,
    }, deps);
    this.#o = { ...opts, shape };
    this.#host = opts.splunk?.host ?? deps.hostname ?? Deno.hostname();
    this.#headers = new Headers({ "content-type": "application/json", ...opts.headers });
    if (shape === "splunk-hec") this.#headers.set("authorization", `Splunk ${opts.splunk!.token}`);
  }

  protected prepare(alert: Alert): Prepared<string> {
    const format = this.#o.format ?? "json";
    // the one rendering of each shape (src/sinks/renderings.ts), as the
    // rendered JetStream publications send it
    const bytes = this.#o.shape === "splunk-hec"
      ? renderPayload(alert, { shape: "splunk-hec", format, ...this.#o.splunk, host: this.#host })
      : renderPayload(alert, { shape: "document", format });
    return { alert, payload: this.#dec.decode(bytes), bytes: bytes.length };
  }

  protected async deliver([item]: Prepared<string>[], signal: AbortSignal): Promise<void> {
    const headers = new Headers(this.#headers);
    // the alert id is the idempotency key: every delivery of one alert (a retry, a
    // replayed trace, a resend after a restart) carries the same one (docs/alert-delivery.md)
    headers.set("idempotency-key", item.alert.id);
    headers.set("lw-alert-id", item.alert.id);
    if (item.alert.traceparent) headers.set("traceparent", item.alert.traceparent);
    const res = await fetch(this.#o.url, {
      method: "POST",
      headers,
      body: item.payload,
      signal,
      redirect: "manual",
    });
    // read the answer so the connection goes back to the pool (and for the log)
    const text = await res.text().catch(() => "");
    if (res.ok) return;
    const why = `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ""}`;
    if (!retryable(res.status)) throw new PermanentDeliveryError("rejected", why);
    const err = new Error(why) as Error & { retryAfterMs?: number };
    const after = retryAfterMs(res.headers.get("retry-after"));
    if (after !== undefined) err.retryAfterMs = after;
    throw err;
  }
}
