/**
 * Builds the sinks a monitor's `sinks:` list names. The JetStream sink is
 * not among them: the `alerts:` section configures it and it is always
 * there.
 *
 * @module
 */
import type { SinkConfig } from "../config/monitor.ts";
import type { SinkDeps } from "./base.ts";
import { JetStreamSink } from "./jetstream.ts";
import { type Rendering, renderingContentType, renderingId, renderPayload } from "./renderings.ts";
import { FileSink } from "./file.ts";
import type { AlertSink } from "./sink.ts";
import { StdoutSink } from "./stdout.ts";
import { SyslogSink } from "./syslog.ts";
import { WebhookSink } from "./webhook.ts";

export type { RenderedStreamDeps, SinkDeps } from "./base.ts";

/** A sink config that cannot run here (a token variable unset): names the config line. */
export class SinkSetupError extends Error {
  /** `file:line:col` of the sink in the monitor config. */
  readonly at: string;
  constructor(at: string, message: string, options?: ErrorOptions) {
    super(`${at}: ${message}`, options);
    this.name = "SinkSetupError";
    this.at = at;
  }
}

/**
 * One sink per entry of `configs`, not yet started (call `start()` on each;
 * a syslog sink reads its TLS files there and throws a named error for a
 * missing one). Secrets named by `token_env` are read now.
 *
 * @example
 * ```ts
 * const sinks = createSinks(cfg.sinks, { log, hostname: Deno.hostname() });
 * await Promise.all(sinks.map((s) => s.start()));
 * for (const s of sinks) s.submit(alert);
 * ```
 */
export function createSinks(configs: readonly SinkConfig[], deps: SinkDeps): AlertSink[] {
  const env = deps.env ?? ((name: string) => Deno.env.get(name));
  return configs.map((c): AlertSink => {
    const common = {
      name: c.name,
      maxQueue: c.maxQueue,
      timeoutMs: c.type === "jetstream" ? 0 : c.timeoutMs,
    };
    switch (c.type) {
      case "syslog":
        return new SyslogSink({
          ...common,
          host: c.host,
          port: c.port,
          ...(c.tls
            ? {
              tls: {
                ...(c.tls.ca ? { caFile: c.tls.ca } : {}),
                ...(c.tls.serverName ? { serverName: c.tls.serverName } : {}),
                ...(c.tls.cert ? { certFile: c.tls.cert } : {}),
                ...(c.tls.key ? { keyFile: c.tls.key } : {}),
              },
            }
            : {}),
          format: c.format,
          appName: c.appName,
          ...(c.hostname ? { hostname: c.hostname } : {}),
          facility: c.facility,
          maxMessageBytes: c.maxMessageBytes,
          maxBackoffMs: c.maxBackoffMs,
        }, deps);
      case "webhook": {
        let token: string | undefined;
        if (c.tokenEnv) {
          token = env(c.tokenEnv);
          if (!token) {
            throw new SinkSetupError(
              c.at,
              `sink ${c.name}: expected environment variable ${c.tokenEnv} to hold the token, ` +
                `found it ${token === undefined ? "unset" : "empty"}`,
            );
          }
        }
        const headers = { ...c.headers };
        if (token && c.shape === "json" && !hasHeader(headers, "authorization")) {
          headers["Authorization"] = `Bearer ${token}`;
        }
        return new WebhookSink({
          ...common,
          url: c.url,
          shape: c.shape,
          format: c.format,
          headers,
          ...(c.shape === "splunk-hec" ? { splunk: { ...c.splunk, token: token! } } : {}),
          maxAttempts: c.maxAttempts,
          maxBackoffMs: c.maxBackoffMs,
        }, deps);
      }
      case "stdout":
        return new StdoutSink({ ...common, format: c.format }, deps);
      case "jetstream": {
        const js = deps.jetstream;
        if (!js) {
          throw new SinkSetupError(
            c.at,
            `sink ${c.name}: expected the alert stream (NATS) to publish ${c.subject} on, found none`,
          );
        }
        const hostname = c.hostname ?? deps.hostname ?? Deno.hostname();
        const rendering: Rendering = c.shape === "syslog"
          ? {
            shape: "syslog",
            format: c.format,
            hostname,
            appName: c.appName,
            facility: c.facility,
          }
          : c.shape === "splunk-hec"
          ? {
            shape: "splunk-hec",
            format: c.format as "json",
            ...c.splunk,
            host: c.splunk?.host ?? hostname,
          }
          : { shape: "document", format: c.format, hostname };
        return new JetStreamSink(js.bus, {
          name: c.name,
          subject: c.subject,
          stream: {
            name: js.stream,
            subjects: [c.subject],
            duplicateWindowMs: js.duplicateWindowMs,
          },
          maxQueue: c.maxQueue,
          ...(js.spoolDir
            ? { spoolDir: `${js.spoolDir}/${c.name.replace(/[^A-Za-z0-9._-]/g, "_")}` }
            : {}),
          // alerts.spool.fsync (and bounds) hold for the rendered spools too
          ...(js.spool ? { spool: js.spool } : {}),
          log: deps.log,
          ...(js.telemetry ? { telemetry: js.telemetry } : {}),
          rendering: {
            id: renderingId(rendering),
            contentType: renderingContentType(rendering),
            render: (alert) => renderPayload(alert, rendering),
          },
        });
      }
      case "file":
        return new FileSink({
          ...common,
          path: c.path,
          format: c.format,
          fsync: c.fsync,
          maxBytes: c.maxBytes,
          keep: c.keep,
        }, deps);
    }
  });
}

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
}
