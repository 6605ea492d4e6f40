/**
 * `type: jetstream`: one rendering of each alert published on its own
 * subject of the alert stream, durably (the same spool and dedup as the
 * native alert sink, `./sink.ts`): the entry's schema, its config and its
 * construction.
 *
 * @module
 */
import { z } from "zod";
import { expectMessage } from "../../shared/schema.ts";
import {
  appName,
  defineSink,
  HEC_KEYS,
  type HecFields,
  hecFields,
  int,
  nonEmpty,
  sinkCommon,
  type SinkConfigBase,
  SinkSetupError,
  sinkType,
  syslogHostname,
} from "../kind.ts";
import {
  type Rendering,
  RENDERING_SHAPES,
  renderingContentType,
  renderingId,
  renderPayload,
  renderSubject,
} from "../renderings.ts";
import { JetStreamSink } from "./sink.ts";

/** Prefix of the native alerts' subjects (`alerts.subject` defaults to it + the monitor). */
export const NATIVE_ALERT_SUBJECT_PREFIX = "latentwatch.alerts.";

/** Subjects of native alerts (what `alerts tail` and native readers filter on): no rendering goes there. */
export const NATIVE_ALERT_SUBJECTS = "latentwatch.alerts.>";

/** Subject a monitor publishes to: dot-separated tokens, no wildcards, no spaces. */
export const PUBLISH_SUBJECT = /^[^\s.*>]+(\.[^\s.*>]+)*$/;

/**
 * `type: jetstream`: one rendering of each alert published on its own
 * subject of the alert stream (`alerts.stream`), durably (spool, dedup), for
 * forwarders such as Vector (deploy/vector/) to send on unchanged.
 */
export interface JetStreamRenderSinkConfig extends Omit<SinkConfigBase, "timeoutMs"> {
  type: "jetstream";
  /** Default `latentwatch.render.<rendering id>.<monitor>` (`renderSubject`). */
  subject: string;
  shape: (typeof RENDERING_SHAPES)[number];
  format: "json" | "ocsf" | "ecs" | "cef";
  /** syslog shape: APP-NAME and facility. */
  appName: string;
  facility: number;
  /** syslog HOSTNAME, CEF `dvchost` (default: the host's name). */
  hostname?: string;
  /** splunk-hec shape: HEC event fields. */
  splunk?: HecFields;
}

const SYSLOG_ONLY = ["app_name", "facility"] as const;

const schema = z.strictObject({
  type: sinkType("jetstream"),
  ...sinkCommon,
  // each publish waits for the NATS publish ack (the bus's ack timeout) and
  // is retried with the same message id; a per-sink limit is not applied, so
  // the key is refused rather than silently ignored
  timeout_ms: z.custom<never>(() => false, {
    error: expectMessage(
      "no timeout_ms on a jetstream sink (each publish waits for the NATS publish ack, " +
        "5000 ms, and is retried)",
    ),
  }).optional(),
  subject: z.string().regex(PUBLISH_SUBJECT, {
    error: expectMessage(
      "a NATS subject without wildcards or spaces, like latentwatch.render.ecs.x",
    ),
    abort: true,
  }).refine((s) => !s.startsWith(NATIVE_ALERT_SUBJECT_PREFIX), {
    error: expectMessage(
      `a subject outside ${NATIVE_ALERT_SUBJECTS} (native alerts only), like latentwatch.render.ecs.x`,
    ),
  }).optional(),
  shape: z.enum(RENDERING_SHAPES, {
    error: expectMessage(`one of ${RENDERING_SHAPES.join(", ")}`),
  }).default("document"),
  format: z.enum(["json", "ocsf", "ecs", "cef"], {
    error: expectMessage("one of json, ocsf, ecs, cef"),
  }).default("json"),
  app_name: appName.optional(),
  hostname: syslogHostname.optional(),
  facility: int(0, 23, "syslog facility; 16 is local0").optional(),
  index: nonEmpty.optional(),
  source: nonEmpty.optional(),
  sourcetype: nonEmpty.optional(),
  host: nonEmpty.optional(),
}).check((ctx) => {
  const j = ctx.value;
  if (j.shape === "splunk-hec" && j.format === "cef") {
    ctx.issues.push({
      code: "custom",
      input: j.format,
      path: ["format"],
      message: "expected one of json, ocsf, ecs with shape splunk-hec, found cef",
    });
  }
  const misplaced: [readonly string[], string][] = [
    [SYSLOG_ONLY, "syslog"],
    [HEC_KEYS, "splunk-hec"],
  ];
  for (const [keys, shape] of misplaced) {
    if (j.shape === shape) continue;
    for (const k of keys) {
      if (j[k as keyof typeof j] !== undefined) {
        ctx.issues.push({
          code: "custom",
          input: j[k as keyof typeof j],
          path: [k],
          message: `expected ${k} only with shape ${shape}, found shape ${j.shape}`,
        });
      }
    }
  }
});

/** A `type: jetstream` entry's subject: its own, else the default for its rendering. */
function subjectOf(s: Record<string, unknown>, monitor: unknown): string | undefined {
  if (typeof s.subject === "string") return s.subject;
  const shape = s.shape ?? "document";
  const format = s.format ?? "json";
  if (
    typeof monitor !== "string" || !RENDERING_SHAPES.includes(shape as "document") ||
    typeof format !== "string"
  ) return undefined;
  return renderSubject({ shape: shape as "document", format: format as "json" }, monitor);
}

/** The rendered-publication sink kind (`type: jetstream`), for the registry. */
export const jetstreamSink = defineSink({
  type: "jetstream",
  schema,
  defaultName: (s, monitor) => {
    const subject = subjectOf(s, monitor);
    return subject !== undefined ? `jetstream:${subject}` : undefined;
  },
  config: (s, { common, monitor }): JetStreamRenderSinkConfig => {
    const { timeoutMs: _unused, ...base } = common; // refused by the schema (no limit applies)
    return {
      type: "jetstream",
      ...base,
      subject: subjectOf(s, monitor)!,
      shape: s.shape,
      format: s.format,
      appName: s.app_name ?? "latentwatch",
      facility: s.facility ?? 16,
      ...(s.hostname ? { hostname: s.hostname } : {}),
      ...(s.shape === "splunk-hec" ? { splunk: hecFields(s) } : {}),
    };
  },
  create: (c, deps) => {
    const js = deps.jetstream;
    if (!js) {
      throw new SinkSetupError(
        c.at,
        `sink ${c.name}: expected the alert stream (NATS) to publish ${c.subject} on, found none`,
      );
    }
    const hostname = c.hostname ?? deps.hostname ?? Deno.hostname();
    const rendering: Rendering = c.shape === "syslog"
      ? { shape: "syslog", format: c.format, hostname, appName: c.appName, facility: c.facility }
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
      stream: { name: js.stream, subjects: [c.subject], duplicateWindowMs: js.duplicateWindowMs },
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
  },
});
