/**
 * `type: stdout`: one JSON line per alert on standard output: the entry's
 * schema, its config and its construction. The sink itself: `./sink.ts`.
 *
 * @module
 */
import { z } from "zod";
import { defineSink, jsonFormat, sinkCommon, type SinkConfigBase, sinkType } from "../kind.ts";
import { StdoutSink } from "./sink.ts";

/** `type: stdout`: one JSON line per alert. */
export interface StdoutSinkConfig extends SinkConfigBase {
  type: "stdout";
  format: "json" | "ocsf" | "ecs";
}

/** The stdout sink kind, for the registry. */
export const stdoutSink = defineSink({
  type: "stdout",
  schema: z.strictObject({
    type: sinkType("stdout"),
    ...sinkCommon,
    format: jsonFormat.default("json"),
  }),
  defaultName: () => "stdout",
  config: (s, { common }): StdoutSinkConfig => ({ type: "stdout", ...common, format: s.format }),
  create: (c, deps) =>
    new StdoutSink({
      name: c.name,
      maxQueue: c.maxQueue,
      timeoutMs: c.timeoutMs,
      format: c.format,
    }, deps),
});
