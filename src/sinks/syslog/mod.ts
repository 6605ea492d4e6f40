/**
 * `type: syslog`: RFC 5424 over TCP (octet counting) or TLS: the entry's
 * schema, its config and its construction. The sink itself: `./sink.ts`.
 *
 * @module
 */
import { z } from "zod";
import { choiceOf, expectMessage, isMapping } from "../../shared/schema.ts";
import {
  appName,
  defineSink,
  int,
  nonEmpty,
  sinkCommon,
  type SinkConfigBase,
  sinkType,
  syslogHostname,
} from "../kind.ts";
import { SyslogSink } from "./sink.ts";

/** `type: syslog`: RFC 5424 over TCP (octet counting) or TLS. */
export interface SyslogSinkConfig extends SinkConfigBase {
  type: "syslog";
  host: string;
  port: number;
  /** Absolute paths; present (possibly empty) when TLS is on. */
  tls?: { ca?: string; serverName?: string; cert?: string; key?: string };
  format: "json" | "cef" | "ocsf" | "ecs";
  appName: string;
  hostname?: string;
  facility: number;
  maxMessageBytes: number;
  maxBackoffMs: number;
}

/** `host:port` of a syslog collector (a bracketed IPv6 address allowed). */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

const schema = z.strictObject({
  type: sinkType("syslog"),
  ...sinkCommon,
  address: z.string().regex(HOST_PORT, {
    error: expectMessage("host:port of the collector, like 127.0.0.1:6514"),
    abort: true,
  }).refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, {
    error: expectMessage("a port in 0..65535"),
  }),
  tls: choiceOf([
    z.literal(true),
    z.strictObject({
      ca: nonEmpty.optional(),
      server_name: nonEmpty.optional(),
      cert: nonEmpty.optional(),
      key: nonEmpty.optional(),
    }).check((ctx) => {
      if ((ctx.value.cert === undefined) !== (ctx.value.key === undefined)) {
        const missing = ctx.value.cert === undefined ? "cert" : "key";
        ctx.issues.push({
          code: "custom",
          input: ctx.value,
          path: [],
          message: `expected cert and key together (mutual TLS), found ${missing} missing`,
        });
      }
    }),
  ], {
    expected: "true or {ca, server_name, cert, key}",
    choose: (v) => v === true ? 0 : isMapping(v) ? 1 : -1,
  }).optional(),
  format: z.enum(["json", "cef", "ocsf", "ecs"], {
    error: expectMessage("one of json, cef, ocsf, ecs"),
  }).default("json"),
  app_name: appName.default("latentwatch"),
  hostname: syslogHostname.optional(),
  facility: int(0, 23, "syslog facility; 16 is local0").default(16),
  max_message_bytes: int(256, 16 * 1024 * 1024, "largest syslog message, in bytes")
    .default(65536),
  max_backoff_ms: int(1, 600_000, "longest wait between reconnects").default(5000),
});

/** The syslog sink kind, for the registry. */
export const syslogSink = defineSink({
  type: "syslog",
  schema,
  defaultName: (s) => typeof s.address === "string" ? `syslog:${s.address}` : undefined,
  config: (s, { common, abs }): SyslogSinkConfig => {
    const colon = s.address.lastIndexOf(":");
    const tls = s.tls === true ? {} : s.tls;
    return {
      type: "syslog",
      ...common,
      host: s.address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
      port: Number(s.address.slice(colon + 1)),
      ...(tls
        ? {
          tls: {
            ...(tls.ca ? { ca: abs(tls.ca) } : {}),
            ...(tls.server_name ? { serverName: tls.server_name } : {}),
            ...(tls.cert ? { cert: abs(tls.cert) } : {}),
            ...(tls.key ? { key: abs(tls.key) } : {}),
          },
        }
        : {}),
      format: s.format,
      appName: s.app_name,
      ...(s.hostname ? { hostname: s.hostname } : {}),
      facility: s.facility,
      maxMessageBytes: s.max_message_bytes,
      maxBackoffMs: s.max_backoff_ms,
    };
  },
  create: (c, deps) =>
    new SyslogSink({
      name: c.name,
      maxQueue: c.maxQueue,
      timeoutMs: c.timeoutMs,
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
    }, deps),
});
