/**
 * What `GET /stats` shows for a monitor (docs/control-api.md): every key in
 * snake_case, like `/readyz`, the metric labels and the config; counts read
 * from the live generation (the one built at start-up until the pipeline
 * runs, then the pipeline's, which a reload replaces).
 *
 * @module
 */
import type { MonitorContext } from "./monitor_context.ts";
import { encoderProvider } from "../runtime/ort_encoder.ts";

/**
 * `camelCase` → `snake_case` (`spoolPending` → `spool_pending`); snake_case
 * names stay as they are.
 *
 * @example
 * ```ts
 * snakeCase("spoolReplayed"); // "spool_replayed"
 * snakeCase("lease_ttl_ms"); // "lease_ttl_ms"
 * ```
 */
export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The object's own keys in snake_case (one level: values stay as they are).
 *
 * @example
 * ```ts
 * snakeCaseKeys({ spoolPending: 2, queued: 1 }); // { spool_pending: 2, queued: 1 }
 * ```
 */
export function snakeCaseKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [snakeCase(k), v]));
}

/**
 * The `/stats` facts of the monitor in `ctx` (the control API adds
 * `metrics`).
 *
 * @example
 * ```ts
 * import type { MonitorContext } from "./monitor_context.ts";
 * declare const ctx: MonitorContext;
 * const stats = monitorStats(ctx);
 * stats.rules; // enabled rules loaded
 * ```
 */
export function monitorStats(ctx: MonitorContext): Record<string, unknown> {
  const { bus, pipeline, config } = ctx;
  const generation = pipeline?.generation ?? ctx.built?.generation;
  const rules = generation?.policies.rules ?? [];
  const perFile = new Map<string, number>(config.policies.map((f) => [f, 0]));
  for (const r of rules) {
    const file = r.def.source.file;
    perFile.set(file, (perFile.get(file) ?? 0) + 1);
  }
  return {
    monitor: config.monitor,
    model: config.model,
    hook: config.hook,
    subject: ctx.subject,
    nats: {
      url: config.nats.url,
      connected: bus?.connected ?? false,
      delivering: bus ? (bus.health?.delivering ?? bus.connected) : false,
      subscribed: pipeline?.subscribed ?? false,
      ...(bus?.health?.lastError ? { last_error: bus.health.lastError } : {}),
      ...(bus?.readChunks ? { read_chunks: bus.readChunks } : {}),
    },
    saes: [...ctx.models?.saes ?? []].map(([id, s]) => ({
      id,
      architecture: s.architecture,
      d_in: s.dIn,
      d_sae: s.dSae,
    })),
    encoders: [...generation?.encoders ?? []].map(([id, e]) => ({
      id,
      provider: encoderProvider(e)?.provider ?? null,
    })),
    rules: rules.length,
    policies: [...perFile].map(([file, n]) => ({ file, rules: n })),
    policy_version: generation?.policies.version ?? null,
    ...(ctx.owner ? { partitions: ctx.owner.stats() } : {}),
    active_requests: pipeline?.activeRequests ?? 0,
    sinks: (pipeline?.sinks ?? []).map((s) => ({ name: s.name, ...snakeCaseKeys(s.stats) })),
    live_alerts: ctx.feed?.stats ?? null,
  };
}
