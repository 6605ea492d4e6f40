/**
 * The control API (Hono): liveness, readiness, metrics, and the live alert
 * feed as Server-Sent Events. Kept free of `Deno.serve` so tests call
 * `app.request()` directly.
 *
 * @module
 */
import { requireToken } from "../workbench/auth.ts";
import { Hono } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";
import {
  type AlertFeed,
  AlertFeedClientLimitError,
  AlertFeedFullError,
  AlertFilterError,
  parseAlertFilter,
} from "./alert_feed.ts";
import type { Telemetry } from "../shared/telemetry.ts";

/** Paths a liveness or readiness probe reads without a token. */
const PROBES = new Set(["/healthz", "/readyz"]);

/** What the control API reports on. */
export interface ControlState {
  telemetry: Telemetry;
  /** True when the sidecar can do its work (bus connected and delivering, models loaded). */
  ready(): boolean;
  /** Why it is not ready, one phrase each, shown in the `/readyz` answer (optional). */
  notReadyReasons?(): string[];
  /** Free-form facts for `/stats` (monitor, SAEs, provider, ...). */
  info(): Record<string, unknown>;
  /**
   * Scale-out: which partitions this sidecar owns and the peers it sees, for
   * `GET /partitions`; without it that route answers 404.
   */
  partitions?(): unknown | null;
  /** Live alerts for `GET /alerts/stream`; without it that route answers 404. */
  alerts?: AlertFeed;
  /** Milliseconds between SSE heartbeat comments (default 15000). */
  sseHeartbeatMs?: number;
  /** Routes mounted as they are (the workbench under `/ui/`). */
  ui?: Hono;
  /**
   * The bearer token (`control.token_env`): when set, every route but
   * `/healthz` and `/readyz` (the probes) requires it, as `/ui/` does.
   */
  token?: string;
}

/**
 * Build the control API.
 *
 * @example
 * ```ts
 * declare const state: ControlState;
 * const app = controlApi(state);
 * const res = await app.request("/healthz"); // 200 "ok"
 * ```
 */
export function controlApi(state: ControlState): Hono {
  const app = new Hono();
  if (state.token !== undefined) {
    const guard = requireToken(state.token);
    app.use("*", (c, next) => PROBES.has(c.req.path) ? next() : guard(c, next));
  }
  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", (c) => {
    if (state.ready()) return c.text("ready");
    const reasons = state.notReadyReasons?.() ?? [];
    return c.text(reasons.length > 0 ? `not ready: ${reasons.join("; ")}` : "not ready", 503);
  });
  app.get("/metrics", async (c) =>
    c.text(await state.telemetry.prometheus(), 200, {
      "Content-Type": state.telemetry.contentType,
    }));
  app.get("/stats", (c) => c.json({ ...state.info(), metrics: state.telemetry.snapshot() }));
  app.get("/partitions", (c) => {
    if (!state.partitions) {
      return c.json({ error: "this sidecar is not scaled out (no scale_out:)" }, 404);
    }
    const p = state.partitions();
    if (p === null) {
      return c.json({ error: "not joined yet: the lease bucket is being opened" }, 503);
    }
    return c.json(p);
  });
  app.get("/alerts/stream", (c) => {
    const feed = state.alerts;
    if (!feed) return c.json({ error: "no live alert feed on this sidecar" }, 404);
    let filter;
    try {
      filter = parseAlertFilter({
        severity: c.req.query("severity"),
        minSeverity: c.req.query("min_severity"),
        policy: c.req.query("policy"),
        model: c.req.query("model"),
      });
    } catch (err) {
      if (err instanceof AlertFilterError) return c.json({ error: err.message }, 400);
      throw err;
    }
    const heartbeatMs = state.sseHeartbeatMs ?? 15_000;
    // subscribe before the response starts, so a full feed is a plain 503
    let sse: SSEStreamingApi | undefined;
    let unsubscribe: () => void;
    try {
      unsubscribe = feed.subscribe(filter, async (alert, { missed }) => {
        if (!sse) return; // not reachable: streamSSE sets it before any delivery turn
        // tell the client it lagged, so a gap is never silent
        if (missed > 0) {
          await sse.writeSSE({ event: "lagged", data: JSON.stringify({ missed }) });
        }
        await sse.writeSSE({ event: "alert", id: alert.id, data: JSON.stringify(alert) });
      }, { client: clientAddress(c.env) });
    } catch (err) {
      if (err instanceof AlertFeedClientLimitError) {
        return c.json({ error: err.message }, 429, { "Retry-After": "5" });
      }
      if (err instanceof AlertFeedFullError) return c.json({ error: err.message }, 503);
      throw err;
    }
    return streamSSE(c, async (stream) => {
      sse = stream;
      const ended = new Promise<void>((resolve) => stream.onAbort(() => resolve()));
      // a comment first, so clients and proxies see the stream open at once;
      // heartbeats keep idle connections from being cut by proxies
      await stream.write(": latentwatch alerts\n\n");
      let beating = false; // a client that stops reading gets no pile of pending heartbeats
      const timer = setInterval(() => {
        if (beating) return;
        beating = true;
        stream.write(": heartbeat\n\n").finally(() => beating = false);
      }, heartbeatMs);
      try {
        // the client leaves, or the sidecar shuts down (the server waits for open streams)
        await Promise.race([ended, feed.closed]);
      } finally {
        clearInterval(timer);
        unsubscribe();
      }
    });
  });
  if (state.ui) app.route("/", state.ui);
  return app;
}

/**
 * The client's address for per-client limits: the remote host `Deno.serve`
 * hands to `app.fetch` as its second argument (Hono's `c.env`), or
 * `"unknown"` (`app.request()` without one; every such caller shares a slot).
 */
function clientAddress(env: unknown): string {
  const addr = (env as { remoteAddr?: { hostname?: string } } | undefined)?.remoteAddr;
  return typeof addr?.hostname === "string" ? addr.hostname : "unknown";
}

/**
 * Serve `app` on `listen` (`host:port`, port 0 for any free port).
 *
 * @example
 * ```ts
 * declare const app: ReturnType<typeof controlApi>;
 * const srv = serveControlApi(app, "127.0.0.1:0");
 * console.log(srv.addr.port);
 * await srv.shutdown();
 * ```
 */
export function serveControlApi(app: Hono, listen: string): Deno.HttpServer<Deno.NetAddr> {
  const i = listen.lastIndexOf(":");
  const hostname = listen.slice(0, i) || "127.0.0.1";
  const port = Number(listen.slice(i + 1));
  return Deno.serve({ hostname, port, onListen: () => {} }, app.fetch);
}
