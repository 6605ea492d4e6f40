/**
 * Every kind of sink a monitor's `sinks:` list may name, in one list. A new
 * sink is a folder `src/sinks/<name>/` whose `mod.ts` exports a
 * {@linkcode SinkKind} (schema, config, construction), plus one line here;
 * the monitor config's schema (`src/config/monitor.ts`) and
 * {@linkcode createSinks} (`./factory.ts`) are built from this list.
 *
 * @module
 */
import { fileSink } from "./file/mod.ts";
import { jetstreamSink } from "./jetstream/mod.ts";
import { stdoutSink } from "./stdout/mod.ts";
import { syslogSink } from "./syslog/mod.ts";
import { webhookSink } from "./webhook/mod.ts";
import type { SinkKind } from "./kind.ts";
import type { z } from "zod";

/** The sink kinds, in the order their types are listed in error messages. */
export const SINKS = [syslogSink, webhookSink, stdoutSink, fileSink, jetstreamSink] as const;

/** One entry of the monitor's `sinks:` list, validated (what a kind's `config` returns). */
export type SinkConfig = ReturnType<(typeof SINKS)[number]["config"]>;

/** Sink types of the `sinks:` list. */
export const SINK_TYPES: readonly SinkConfig["type"][] = SINKS.map((k) => k.type);

/** Any registered kind, for code that does not care which. */
// deno-lint-ignore no-explicit-any
export type AnySinkKind = SinkKind<string, z.ZodType, any>;

/**
 * The kind of type `type`, or undefined.
 *
 * @example
 * ```ts
 * sinkKind("stdout")?.type; // "stdout"
 * sinkKind("carrier-pigeon"); // undefined
 * ```
 */
export function sinkKind(type: unknown): AnySinkKind | undefined {
  return (SINKS as readonly AnySinkKind[]).find((k) => k.type === type);
}

export type { FileSinkConfig } from "./file/mod.ts";
export type { JetStreamRenderSinkConfig } from "./jetstream/mod.ts";
export type { StdoutSinkConfig } from "./stdout/mod.ts";
export type { SyslogSinkConfig } from "./syslog/mod.ts";
export type { WebhookSinkConfig } from "./webhook/mod.ts";
