/**
 * The `partitions` start-up step of a scaled-out monitor (`scale_out:` in
 * the monitor file): open the lease bucket, join the peers, and hand the
 * pipeline the partitions this sidecar owns as they come and go. Without
 * `scale_out:` it does nothing (the pipeline takes every partition).
 *
 * @module
 */
import { scopedLeases } from "../bus/leases.ts";
import { subjectToken } from "../core/frame/subjects.ts";
import { PartitionOwner } from "./partition_owner.ts";
import type { MonitorContext } from "./monitor_context.ts";
import type { Step } from "./steps.ts";

/** This sidecar's name among its peers: configured, or host, pid and a random suffix. */
export function memberName(configured?: string): string {
  if (configured) return configured;
  const host = Deno.hostname().replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 40);
  const suffix = crypto.getRandomValues(new Uint8Array(3));
  return `${host}-${Deno.pid}-${[...suffix].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Join the peers once the pipeline runs; leave (handing every partition over) before it stops. */
export const PARTITIONS_STEP: Step<MonitorContext> = {
  name: "partitions",
  start: async (ctx) => {
    const scale = ctx.config.scaleOut;
    if (!scale) return;
    const bus = ctx.bus!;
    const pipeline = ctx.pipeline!;
    if (!bus.openLeases) {
      throw new TypeError(
        `${ctx.config.file}: scale_out: expected a NATS bus with JetStream KV, found a bus without leases`,
      );
    }
    if (!ctx.subject.endsWith(".*")) {
      throw new TypeError(
        `${ctx.config.file}: nats.subject: expected a filter ending in '.*' (the partition token) ` +
          `with scale_out, found '${ctx.subject}'`,
      );
    }
    // one bucket for every monitor (one stream to grant in NATS permissions)
    const store = scopedLeases(
      await bus.openLeases({
        bucket: scale.bucket,
        ttlMs: scale.leaseTtlMs,
        replicas: scale.replicas,
        // a cluster that is still electing its JetStream leader answers a moment later
        onOpenRetry: (r) => ctx.log.warn("partitions.bucket_retry", { ...r }),
      }),
      // scoped by monitor, model and hook: sidecars of another model never share these
      `${ctx.config.monitor}.${subjectToken("model", ctx.config.model)}.${
        subjectToken("hook", ctx.config.hook)
      }.`,
    );
    if (store.replicas !== scale.replicas) {
      ctx.log.warn("partitions.bucket_replicas", {
        bucket: scale.bucket,
        expected: scale.replicas,
        found: store.replicas,
        note: "the bucket existed already; its replicas are not changed by the sidecar",
      });
    }
    ctx.owner = new PartitionOwner({
      store,
      member: memberName(scale.member),
      partitions: scale.partitions,
      heartbeatMs: scale.heartbeatMs,
      onAcquire: async (p) => {
        pipeline.own(p);
        // the subscription is live on the server once this returns
        await bus.flush();
      },
      // unsubscribes at once; its requests are forgotten in the background
      onRelease: (p) => void pipeline.release(p),
      log: ctx.log,
      telemetry: ctx.telemetry,
    });
    await ctx.owner.start();
  },
  stop: async (ctx) => {
    await ctx.owner?.stop();
  },
};
