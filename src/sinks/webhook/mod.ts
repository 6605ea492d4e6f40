/**
 * `type: webhook`: HTTP POST of JSON or a Splunk HEC event: the entry's
 * schema, its config and its construction (the token read from the
 * environment here). The sink itself: `./sink.ts`.
 *
 * @module
 */
import { z } from "zod";
import { expectMessage } from "../../shared/schema.ts";
import {
  defineSink,
  HEC_KEYS,
  type HecFields,
  hecFields,
  int,
  jsonFormat,
  nonEmpty,
  sinkCommon,
  type SinkConfigBase,
  SinkSetupError,
  sinkType,
} from "../kind.ts";
import { WebhookSink } from "./sink.ts";

/** `type: webhook`: HTTP POST of JSON or a Splunk HEC event. */
export interface WebhookSinkConfig extends SinkConfigBase {
  type: "webhook";
  url: string;
  shape: "json" | "splunk-hec";
  format: "json" | "ocsf" | "ecs";
  headers: Record<string, string>;
  /** Environment variable holding the token (Splunk HEC token, or a bearer token for `json`). */
  tokenEnv?: string;
  splunk?: HecFields;
  maxAttempts: number;
  maxBackoffMs: number;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const schema = z.strictObject({
  type: sinkType("webhook"),
  ...sinkCommon,
  url: z.string().refine((s) => /^https?:\/\/[^\s/]+/.test(s) && URL.canParse(s), {
    error: expectMessage("an http:// or https:// URL"),
  }),
  shape: z.enum(["json", "splunk-hec"], {
    error: expectMessage("one of json, splunk-hec"),
  }).default("json"),
  format: jsonFormat.default("json"),
  headers: z.record(
    z.string().regex(HEADER_NAME, { error: expectMessage("an HTTP header name") }),
    z.string({ error: expectMessage("a header value (a string)") }),
    { error: expectMessage("a mapping of header names to values") },
  ).default({}),
  token_env: z.string().regex(ENV_NAME, {
    error: expectMessage("an environment variable name like SPLUNK_TOKEN"),
  }).optional(),
  index: nonEmpty.optional(),
  source: nonEmpty.optional(),
  sourcetype: nonEmpty.optional(),
  host: nonEmpty.optional(),
  max_attempts: int(1, 100, "POST attempts per alert before it is dropped").default(5),
  max_backoff_ms: int(1, 600_000, "longest wait between attempts").default(10_000),
}).check((ctx) => {
  const w = ctx.value;
  if (w.shape === "splunk-hec" && w.token_env === undefined) {
    ctx.issues.push({
      code: "custom",
      input: w,
      path: ["shape"],
      message: "expected token_env (the variable holding the HEC token) with shape splunk-hec, " +
        "found none",
    });
  }
  if (w.shape !== "splunk-hec") {
    for (const k of HEC_KEYS) {
      if (w[k] !== undefined) {
        ctx.issues.push({
          code: "custom",
          input: w[k],
          path: [k],
          message: `expected ${k} only with shape splunk-hec, found shape ${w.shape}`,
        });
      }
    }
  }
});

/** The webhook sink kind (JSON or Splunk HEC), for the registry. */
export const webhookSink = defineSink({
  type: "webhook",
  schema,
  defaultName: (s) =>
    typeof s.url === "string" && URL.canParse(s.url) ? `webhook:${new URL(s.url).host}` : undefined,
  config: (s, { common }): WebhookSinkConfig => ({
    type: "webhook",
    ...common,
    url: s.url,
    shape: s.shape,
    format: s.format,
    headers: s.headers,
    ...(s.token_env ? { tokenEnv: s.token_env } : {}),
    ...(s.shape === "splunk-hec" ? { splunk: hecFields(s) } : {}),
    maxAttempts: s.max_attempts,
    maxBackoffMs: s.max_backoff_ms,
  }),
  create: (c, deps) => {
    const env = deps.env ?? ((name: string) => Deno.env.get(name));
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
      name: c.name,
      maxQueue: c.maxQueue,
      timeoutMs: c.timeoutMs,
      url: c.url,
      shape: c.shape,
      format: c.format,
      headers,
      ...(c.shape === "splunk-hec" ? { splunk: { ...c.splunk, token: token! } } : {}),
      maxAttempts: c.maxAttempts,
      maxBackoffMs: c.maxBackoffMs,
    }, deps);
  },
});

function hasHeader(headers: Record<string, string>, name: string): boolean {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
}
