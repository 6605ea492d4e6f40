/**
 * The control API (Hono): liveness, readiness, metrics. Kept free of
 * `Deno.serve` so tests call `app.request()` directly.
 *
 * @module
 */
import { Hono } from "hono";
import type { Telemetry } from "./telemetry.ts";

/** What the control API reports on. */
export interface ControlState {
  telemetry: Telemetry;
  /** True when the sidecar can do its work (bus connected, models loaded). */
  ready(): boolean;
  /** Free-form facts for `/stats` (monitor, SAEs, provider, ...). */
  info(): Record<string, unknown>;
}

/**
 * Build the control API.
 *
 * @example
 * ```ts
 * const app = controlApi(state);
 * const res = await app.request("/healthz"); // 200 "ok"
 * ```
 */
export function controlApi(state: ControlState): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", (c) => state.ready() ? c.text("ready") : c.text("not ready", 503));
  app.get("/metrics", (c) =>
    c.text(state.telemetry.prometheus(), 200, {
      "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
    }));
  app.get("/stats", (c) => c.json({ ...state.info(), metrics: state.telemetry.snapshot() }));
  return app;
}

/**
 * Serve `app` on `listen` (`host:port`, port 0 for any free port).
 *
 * @example
 * ```ts
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
