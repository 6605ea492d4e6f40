/**
 * Builds the sinks a monitor's `sinks:` list names, each by its kind in the
 * registry (`./registry.ts`). The native JetStream alert sink is not among
 * them: the `alerts:` section configures it and it is always there.
 *
 * @module
 */
import type { SinkDeps } from "./base.ts";
import { redactingSink } from "./redacting.ts";
import { SinkSetupError } from "./kind.ts";
import { type SinkConfig, sinkKind } from "./registry.ts";
import type { AlertSink } from "./sink.ts";

export type { RenderedStreamDeps, SinkDeps } from "./base.ts";
export { SinkSetupError };

/**
 * One sink per entry of `configs`, not yet started (call `start()` on each;
 * a syslog sink reads its TLS files there and throws a named error for a
 * missing one). Secrets named by `token_env` are read now. A sink with a
 * `redact` setting gets each alert redacted before it renders or queues it
 * (the key of `hash` mode is `deps.redactHashKey`).
 *
 * @example
 * ```ts
 * import { Logger } from "../shared/log.ts";
 * import { ALERT } from "../core/render/test_alert.ts";
 * import type { SinkConfig } from "./registry.ts";
 * declare const configs: SinkConfig[];
 * const sinks = createSinks(configs, { log: new Logger(), hostname: Deno.hostname() });
 * await Promise.all(sinks.map((s) => s.start()));
 * for (const s of sinks) s.submit(ALERT);
 * ```
 */
export function createSinks(configs: readonly SinkConfig[], deps: SinkDeps): AlertSink[] {
  return configs.map((c): AlertSink => {
    const kind = sinkKind(c.type);
    if (!kind) {
      throw new SinkSetupError(c.at, `sink ${c.name}: expected a sink type, found ${c.type}`);
    }
    const sink: AlertSink = kind.create(c, deps);
    return redactingSink(sink, {
      mode: c.redact ?? "none",
      ...(deps.redactHashKey ? { hashKey: deps.redactHashKey } : {}),
    });
  });
}
