/**
 * The `scale_out:` section of a monitor file: several sidecars sharing one
 * model's frames by partition, ownership leased through a JetStream KV
 * bucket (docs/scale-out.md). Its zod schema and the config it becomes.
 *
 * @module
 */
import { z } from "zod";
import { expectMessage, int } from "../shared/schema.ts";

/** Defaults of `scale_out:`. */
export const SCALE_OUT_DEFAULTS = {
  /**
   * A dead sidecar's partitions are taken over a TTL to a TTL and two
   * heartbeats after its last renewal; above a 3-node cluster's leader
   * election (4–8 s on 2.9), so a failover does not make sidecars give
   * their partitions up.
   */
  leaseTtlMs: 10_000,
  replicas: 1,
  bucket: "latentwatch_partitions",
} as const;

const BUCKET = /^[A-Za-z0-9_-]+$/;
const MEMBER = /^[A-Za-z0-9_-]+$/;

/** The zod schema of `scale_out:` (YAML keys as written). */
export const ScaleOutSchema = z.strictObject({
  partitions: int(1, 1024, "the number of partitions the taps spread requests over"),
  lease_ttl_ms: int(1000, 600_000, "milliseconds a partition lease lives without renewal")
    .default(SCALE_OUT_DEFAULTS.leaseTtlMs),
  heartbeat_ms: int(100, 300_000, "milliseconds between lease renewals").optional(),
  bucket: z.string().regex(BUCKET, {
    error: expectMessage("a KV bucket name of letters, digits, '_' or '-'"),
  }).optional(),
  replicas: int(
    1,
    5,
    "copies of the lease bucket in a NATS cluster (1 to 5; 3 on a 3-node cluster)",
  )
    .default(SCALE_OUT_DEFAULTS.replicas),
  member: z.string().regex(MEMBER, {
    error: expectMessage("a sidecar name of letters, digits, '_' or '-'"),
  }).optional(),
}).check((ctx) => {
  const s = ctx.value;
  // a sidecar gives its partitions up a heartbeat before its lease could be
  // counted dead, and rounds start a heartbeat after the last one ended: a
  // lease must see at least three heartbeats
  if (s.heartbeat_ms !== undefined && s.heartbeat_ms * 3 > s.lease_ttl_ms) {
    ctx.issues.push({
      code: "custom",
      input: s.heartbeat_ms,
      path: ["heartbeat_ms"],
      message: `expected heartbeat_ms ≤ lease_ttl_ms / 3 (${Math.floor(s.lease_ttl_ms / 3)}), ` +
        `found ${s.heartbeat_ms}; a lease must be renewed at least three times in its lifetime`,
    });
  }
});

/** `scale_out:` as the monitor sees it. */
export interface ScaleOutConfig {
  /** Partitions the taps spread requests over (their `partitions` setting must be the same). */
  partitions: number;
  /** Milliseconds a lease lives without renewal. */
  leaseTtlMs: number;
  /** Milliseconds between renewals (default a tenth of the TTL). */
  heartbeatMs: number;
  /**
   * The KV bucket of leases (default `latentwatch_partitions`, shared by
   * every monitor: keys are under the monitor's name).
   */
  bucket: string;
  /** Copies of the bucket in a cluster. */
  replicas: number;
  /** This sidecar's name among its peers (default `<hostname>-<pid>-<random>`). */
  member?: string;
}

/**
 * `scale_out:` as validated, with its defaults filled in.
 *
 * @example
 * ```ts
 * const s = scaleOutConfig({ partitions: 16, lease_ttl_ms: 10_000, replicas: 3 });
 * s.heartbeatMs; // 1000
 * s.bucket; // "latentwatch_partitions"
 * ```
 */
export function scaleOutConfig(s: z.infer<typeof ScaleOutSchema>): ScaleOutConfig {
  return {
    partitions: s.partitions,
    leaseTtlMs: s.lease_ttl_ms,
    heartbeatMs: s.heartbeat_ms ?? Math.max(100, Math.floor(s.lease_ttl_ms / 10)),
    bucket: s.bucket ?? SCALE_OUT_DEFAULTS.bucket,
    replicas: s.replicas,
    ...(s.member !== undefined ? { member: s.member } : {}),
  };
}
