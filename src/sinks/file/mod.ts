/**
 * `type: file`: JSONL appended to a file, rotated by size: the entry's
 * schema, its config and its construction. The sink itself: `./sink.ts`.
 *
 * @module
 */
import { z } from "zod";
import { expectMessage } from "../../shared/schema.ts";
import {
  defineSink,
  int,
  jsonFormat,
  nonEmpty,
  sinkCommon,
  type SinkConfigBase,
  sinkType,
} from "../kind.ts";
import { FileSink } from "./sink.ts";

/** `type: file`: JSONL appended to a file, rotated by size. */
export interface FileSinkConfig extends SinkConfigBase {
  type: "file";
  /** Absolute. */
  path: string;
  format: "json" | "ocsf" | "ecs";
  fsync: "always" | "never";
  maxBytes: number;
  keep: number;
}

/** The file sink kind, for the registry. */
export const fileSink = defineSink({
  type: "file",
  schema: z.strictObject({
    type: sinkType("file"),
    ...sinkCommon,
    path: nonEmpty,
    format: jsonFormat.default("json"),
    fsync: z.enum(["always", "never"], { error: expectMessage("always or never") })
      .default("always"),
    max_bytes: int(0, Number.MAX_SAFE_INTEGER, "bytes before the file is rotated; 0: never")
      .default(100 * 1024 * 1024),
    keep: int(0, 1000, "rotated files kept").default(3),
  }),
  // the path as written (not made absolute)
  defaultName: (s) => typeof s.path === "string" ? `file:${s.path}` : undefined,
  config: (s, { common, abs }): FileSinkConfig => ({
    type: "file",
    ...common,
    path: abs(s.path),
    format: s.format,
    fsync: s.fsync,
    maxBytes: s.max_bytes,
    keep: s.keep,
  }),
  create: (c, deps) =>
    new FileSink({
      name: c.name,
      maxQueue: c.maxQueue,
      timeoutMs: c.timeoutMs,
      path: c.path,
      format: c.format,
      fsync: c.fsync,
      maxBytes: c.maxBytes,
      keep: c.keep,
    }, deps),
});
