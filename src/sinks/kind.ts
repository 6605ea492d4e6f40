/**
 * What one kind of sink brings to the registry (`src/sinks/registry.ts`):
 * the zod schema of its `sinks:` entry in a monitor file, how a validated
 * entry becomes its config, its default name, and how to build it. The
 * monitor config (`src/config/monitor.ts`) builds its `sinks:` schema from
 * the registry and `createSinks` (`src/sinks/factory.ts`) looks kinds up in
 * it, so neither names a sink type.
 *
 * Also the schema pieces every entry shares (`name`, `max_queue`,
 * `timeout_ms`) and the integer and format helpers the sinks' schemas use.
 *
 * @module
 */
import { z } from "zod";
import { expectMessage, int } from "../shared/schema.ts";
import { REDACT_MODES, type RedactMode } from "../core/redact.ts";

export { int, nonEmpty } from "../shared/schema.ts";
import type { SinkDeps } from "./base.ts";
import type { AlertSink } from "./sink.ts";

/** Defaults of the keys every sink entry has. */
export const SINK_DEFAULTS = { maxQueue: 10000, timeoutMs: 5000 } as const;

/** What every sink config has. */
export interface SinkConfigBase {
  /** Unique sink name, `<type>:<name or destination>` (logs, metrics). */
  name: string;
  /** Where the sink is written, `file:line:col`, for errors found when it starts. */
  at: string;
  maxQueue: number;
  timeoutMs: number;
  /**
   * Redaction of token text in what this sink sends (`redact:`); combined
   * with the alert's own (rule, monitor), the stricter winning. Absent: none.
   */
  redact?: RedactMode;
}

/** What turning a validated entry into its config may use. */
export interface SinkEntryContext {
  /** The keys every config has, filled in (name, position, queue bound, timeout). */
  common: SinkConfigBase;
  /** The monitor's name (default subjects are made from it). */
  monitor: string;
  /** A path from the entry made absolute (against the monitor file's folder). */
  abs(path: string): string;
}

/**
 * One kind of sink: `type` is what a `sinks:` entry names.
 *
 * @typeParam T the `type:` value
 * @typeParam S the zod schema of an entry
 * @typeParam C the config a validated entry becomes
 */
export interface SinkKind<T extends string, S extends z.ZodType, C extends { type: T }> {
  readonly type: T;
  /** The entry as written in YAML (snake_case keys, `type: <T>` included). */
  readonly schema: S;
  /**
   * The name of an unnamed entry, from its destination (`syslog:<address>`,
   * `stdout`, ...), read from the raw (not yet validated) entry so that
   * duplicate names are found with the other problems; undefined when the
   * entry is too broken to name.
   */
  defaultName(entry: Record<string, unknown>, monitor: unknown): string | undefined;
  /** A validated entry → its config (camelCase, paths absolute, defaults applied). */
  config(entry: z.output<S>, ctx: SinkEntryContext): C;
  /** Build the sink (not started). Throws {@linkcode SinkSetupError} when it cannot run here. */
  create(config: C, deps: SinkDeps): AlertSink;
}

/**
 * Type a sink kind (checks `config` against `schema` and `create` against
 * `config`), for the one line each sink adds to the registry.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { StdoutSink } from "./stdout/sink.ts";
 * const echo = defineSink({
 *   type: "echo",
 *   schema: z.strictObject({ type: sinkType("echo"), ...sinkCommon }),
 *   defaultName: () => "echo",
 *   config: (_entry, { common }) => ({ type: "echo" as const, ...common }),
 *   create: (c, deps) => new StdoutSink({ name: c.name, maxQueue: c.maxQueue, timeoutMs: 5000 }, deps),
 * });
 * ```
 */
export function defineSink<T extends string, S extends z.ZodType, C extends { type: T }>(
  kind: SinkKind<T, S, C>,
): SinkKind<T, S, C> {
  return kind;
}

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

/** `format:` of the sinks that write JSON documents. */
export const jsonFormat = z.enum(["json", "ocsf", "ecs"], {
  error: expectMessage("one of json, ocsf, ecs"),
});

const SINK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The keys every sink entry has (spread into its `z.strictObject`). */
export const sinkCommon = {
  name: z.string().regex(SINK_NAME, {
    error: expectMessage("a sink name of letters, digits, '.', '_' or '-'"),
  }).optional(),
  max_queue: int(1, 10_000_000, "alerts queued for this sink before new ones are dropped")
    .default(SINK_DEFAULTS.maxQueue),
  timeout_ms: int(1, 600_000, "milliseconds one delivery attempt may take")
    .default(SINK_DEFAULTS.timeoutMs),
  redact: z.enum(REDACT_MODES, { error: expectMessage("one of none, hash, tokens") }).optional(),
};

/**
 * The `type:` key of an entry of kind `t`.
 *
 * @example
 * ```ts
 * sinkType("stdout");
 * ```
 */
export function sinkType<const T extends string>(t: T): z.ZodLiteral<T> {
  return z.literal(t, { error: expectMessage(`type: ${t}`) });
}

/** Splunk HEC event fields (`index`, `source`, `sourcetype`, `host`) of an entry. */
export const HEC_KEYS = ["index", "source", "sourcetype", "host"] as const;

/** HEC fields given in an entry, absent ones left out. */
export type HecFields = { index?: string; source?: string; sourcetype?: string; host?: string };

/**
 * The HEC fields an entry sets.
 *
 * @example
 * ```ts
 * hecFields({ index: "main", host: undefined }); // { index: "main" }
 * ```
 */
export function hecFields(entry: HecFields): HecFields {
  const out: HecFields = {};
  for (const k of HEC_KEYS) if (entry[k]) out[k] = entry[k];
  return out;
}

/** APP-NAME of a syslog message (`type: syslog`, and the syslog shape of `type: jetstream`). */
export const appName: z.ZodString = z.string().regex(/^[\x21-\x7e]{1,48}$/, {
  error: expectMessage("an APP-NAME of 1 to 48 printable ASCII characters, no spaces"),
});

/** HOSTNAME of a syslog message (`type: syslog`, `type: jetstream`). */
export const syslogHostname: z.ZodString = z.string().regex(/^[\x21-\x7e]{1,255}$/, {
  error: expectMessage("a HOSTNAME of 1 to 255 printable ASCII characters, no spaces"),
});
