/**
 * The `sinks:` list of a monitor file, built from the sink registry
 * (`src/sinks/registry.ts`): its schema (one option per sink kind, picked by
 * `type`), the names entries get, duplicate names, and each validated entry
 * turned into its kind's config. No sink type is named here.
 *
 * @module
 */
import { z } from "zod";
import type { RedactMode } from "../core/redact.ts";
import { SINK_DEFAULTS } from "../sinks/kind.ts";
import { SINK_TYPES, type SinkConfig, sinkKind, SINKS } from "../sinks/registry.ts";
import { choiceOf, expectMessage, isMapping } from "../shared/schema.ts";
import type { ConfigIssue } from "./errors.ts";
import type { YamlSource } from "./yaml_source.ts";

/**
 * Never valid: chosen for a mapping whose `type` is not a sink type, so the
 * error sits at that `type` and lists the types.
 */
const UnknownSinkType = z.looseObject({
  type: z.custom<never>(() => false, {
    error: expectMessage(`a sink type: one of ${SINK_TYPES.join(", ")}`),
  }),
});

/** One `sinks:` entry: the option is picked by its `type`. */
export const SinkSchema = choiceOf(
  [...SINKS.map((k) => k.schema), UnknownSinkType] as unknown as [z.ZodType, ...z.ZodType[]],
  {
    expected: `a sink: a mapping with type ${SINK_TYPES.join(", ")}`,
    choose: (v) => {
      if (!isMapping(v)) return -1;
      const i = SINK_TYPES.indexOf(v.type as SinkConfig["type"]);
      return i >= 0 ? i : "type" in v ? SINK_TYPES.length : -1;
    },
  },
);

/**
 * The name a sink entry gets: `<type>:<name>` when named, else its kind's
 * default name from its destination (`syslog:<address>`, `webhook:<url
 * host>`, `stdout`, `file:<path>`, `jetstream:<subject>`).
 */
export function sinkName(s: Record<string, unknown>, monitor: unknown): string | undefined {
  if (typeof s.type !== "string") return undefined;
  if (typeof s.name === "string") return `${s.type}:${s.name}`;
  return sinkKind(s.type)?.defaultName(s, monitor);
}

/** Two sinks with one name (they would share counters and log lines): each repeat reported. */
export function duplicateSinkNames(src: YamlSource): ConfigIssue[] {
  const sinks = (src.value as Record<string, unknown> | null)?.sinks;
  const monitor = (src.value as Record<string, unknown> | null)?.monitor;
  if (!Array.isArray(sinks)) return [];
  const seen = new Map<string, number>();
  const issues: ConfigIssue[] = [];
  sinks.forEach((s, i) => {
    const name = isMapping(s) ? sinkName(s, monitor) : undefined;
    if (name === undefined) return;
    const at = src.locate(["sinks", i]);
    const first = seen.get(name);
    if (first === undefined) seen.set(name, at.line);
    else {
      issues.push({
        file: src.file,
        ...at,
        reason: `duplicate sink '${name}': expected sink names to be unique, found it already ` +
          `defined at line ${first}; give one a distinct 'name'`,
      });
    }
  });
  return issues;
}

/** A validated `sinks:` entry → its config, by its kind. */
export function sinkConfig(
  s:
    & { type: string; max_queue: number; timeout_ms?: number; redact?: RedactMode }
    & Record<
      string,
      unknown
    >,
  src: YamlSource,
  i: number,
  abs: (p: string) => string,
  monitor: string,
): SinkConfig {
  const pos = src.locate(["sinks", i]);
  const common = {
    name: sinkName(s, monitor)!,
    at: `${src.file}:${pos.line}:${pos.col}`,
    maxQueue: s.max_queue,
    // always set but on jetstream sinks, which refuse the key (and drop it)
    timeoutMs: s.timeout_ms ?? SINK_DEFAULTS.timeoutMs,
    ...(s.redact !== undefined ? { redact: s.redact } : {}),
  };
  return sinkKind(s.type)!.config(s, { common, abs, monitor });
}
