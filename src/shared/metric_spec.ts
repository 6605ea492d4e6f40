/**
 * What the sidecar measures, declared once: every counter and gauge
 * ({@linkcode METRIC_SPEC}: name, kind, unit, help, label names) and every
 * latency histogram ({@linkcode HISTOGRAM_SPEC}). `./telemetry.ts` records
 * them; docs/operations.md says what each means and what to alert on.
 *
 * @module
 */

/** One counter or gauge: its kind, unit (UCUM, as OTel writes it), help text and label names. */
export interface MetricSpec {
  readonly kind: "counter" | "gauge";
  readonly unit: string;
  readonly help: string;
  /** Every label a series of this metric may carry (Prometheus needs them declared). */
  readonly labels: readonly string[];
}

/** Every metric the sidecar emits. Names follow OTel conventions (no `_total`). */
export const METRIC_SPEC = {
  "latentwatch.frames.received": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help: "Frames received from the tap",
  },
  "latentwatch.frames.rejected": {
    kind: "counter",
    unit: "{frame}",
    labels: ["reason"],
    help: "Frames rejected by the decoder, by reason (the offending field)",
  },
  "latentwatch.frames.dropped": {
    kind: "counter",
    unit: "{frame}",
    labels: ["reason"],
    help: "Valid frames dropped, by reason",
  },
  "latentwatch.frames.lost": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help: "Frames the tap sent that never arrived (gaps in Lw-Seq)",
  },
  "latentwatch.frames.lost_at_restart": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help: "Of frames.lost: frames of requests a previous run was following that no run processed " +
      "(queued when it died, or sent while no sidecar listened)",
  },
  "latentwatch.checkpoint.errors": {
    kind: "counter",
    unit: "{write}",
    labels: [],
    help: "Per-request seq checkpoints that could not be written",
  },
  "latentwatch.frames.out_of_order": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help: "Frames that arrived late or repeated (Lw-Seq below the next expected)",
  },
  "latentwatch.requests.evicted": {
    kind: "counter",
    unit: "{request}",
    labels: ["reason"],
    help: "Request states evicted before their end marker, by reason (ttl, capacity)",
  },
  "latentwatch.policy.reloads": {
    kind: "counter",
    unit: "{reload}",
    labels: ["result"],
    help: "Policy reloads, by result (ok, refused)",
  },
  "latentwatch.trace.dropped": {
    kind: "counter",
    unit: "{frame}",
    labels: ["reason"],
    help: "Frames the trace recorder could not write, by reason",
  },
  "latentwatch.policy.requests": {
    kind: "gauge",
    unit: "{request}",
    labels: [],
    help: "Requests with policy state (windows, suppression)",
  },
  "latentwatch.policy.suppressed": {
    kind: "counter",
    unit: "{firing}",
    labels: [],
    help: "Rule firings held back by suppression (dedup)",
  },
  "latentwatch.policy.rate_limited": {
    kind: "counter",
    unit: "{firing}",
    labels: [],
    help: "Rule firings held back by a rule's rate limit",
  },
  "latentwatch.policy.excepted": {
    kind: "counter",
    unit: "{firing}",
    labels: [],
    help: "Rule firings skipped by an exception",
  },
  "latentwatch.policy.evicted": {
    kind: "counter",
    unit: "{request}",
    labels: ["reason"],
    help: "Policy request states evicted before their end marker, by reason (ttl, capacity)",
  },
  "latentwatch.steer.planned": {
    kind: "counter",
    unit: "{command}",
    labels: ["rule"],
    help: "Steering commands rules asked for, by rule (also carried on their alerts)",
  },
  "latentwatch.steer.sent": {
    kind: "counter",
    unit: "{command}",
    labels: ["op", "route"],
    help: "Steering commands sent to taps, by operation and route (subject, or in a gate verdict)",
  },
  "latentwatch.evidence.tokens": {
    kind: "counter",
    unit: "{token}",
    labels: ["sae"],
    help: "Flagged tokens encoded in full for the evidence on alerts, by SAE",
  },
  "latentwatch.evidence.missing": {
    kind: "counter",
    unit: "{token}",
    labels: ["reason"],
    help: "Flagged tokens sent without top latents, by reason (not_in_ring, encode_error)",
  },
  "latentwatch.evaluate.errors": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help:
      "Frames whose policy evaluation failed (logged with the request; a gated frame gets an error verdict)",
  },
  "latentwatch.pipeline.errors": {
    kind: "counter",
    unit: "{error}",
    labels: ["stage"],
    help:
      "Errors caught in the pipeline, by stage (on_alert, sink_submit, release, batch, tap): logged, processing goes on",
  },
  "latentwatch.steer.repeats": {
    kind: "counter",
    unit: "{command}",
    labels: ["rule"],
    help: "Steer actions not sent again because the rule already steered that request",
  },
  "latentwatch.steer.acks": {
    kind: "counter",
    unit: "{ack}",
    labels: ["status"],
    help:
      "Acknowledgements from taps, by status (applied, rejected, expired, not_applied, malformed)",
  },
  "latentwatch.steer.errors": {
    kind: "counter",
    unit: "{command}",
    labels: ["reason"],
    help: "Steering commands not sent, by reason (disabled, unresolved, publish)",
  },
  "latentwatch.gate.replies": {
    kind: "counter",
    unit: "{reply}",
    labels: ["verdict"],
    help: "Verdicts sent to gated frames, by verdict (continue, steer, abort, error)",
  },
  "latentwatch.bus.errors": {
    kind: "counter",
    unit: "{error}",
    labels: ["type"],
    help: "Subscription and connection errors",
  },
  "latentwatch.tokens.dropped": {
    kind: "counter",
    unit: "{token}",
    labels: ["reason"],
    help: "Tokens in dropped frames",
  },
  "latentwatch.tokens.encoded": {
    kind: "counter",
    unit: "{token}",
    labels: ["sae"],
    help: "Tokens encoded, by SAE",
  },
  "latentwatch.batches": {
    kind: "counter",
    unit: "{batch}",
    help: "Micro-batches encoded",
    labels: [],
  },
  "latentwatch.encode.errors": {
    kind: "counter",
    unit: "{batch}",
    labels: [],
    help: "Batches whose encode failed",
  },
  "latentwatch.alerts": {
    kind: "counter",
    unit: "{alert}",
    labels: ["rule", "severity"],
    help: "Alerts raised, by rule and severity",
  },
  "latentwatch.alerts.published": {
    kind: "counter",
    unit: "{alert}",
    labels: ["sink"],
    help: "Alerts acknowledged by the stream, by sink (jetstream, or a rendered jetstream sink)",
  },
  "latentwatch.alerts.duplicate": {
    kind: "counter",
    unit: "{alert}",
    labels: ["sink"],
    help: "Alert publishes the stream reported as duplicates (already stored), by sink",
  },
  "latentwatch.alerts.dropped": {
    kind: "counter",
    unit: "{alert}",
    labels: ["reason", "sink"],
    help: "Alerts dropped, by reason and sink (every sink's drops are counted here)",
  },
  "latentwatch.alerts.publish_retries": {
    kind: "counter",
    unit: "{attempt}",
    labels: ["sink"],
    help: "Alert publish retries, by sink",
  },
  "latentwatch.queue.depth": {
    kind: "gauge",
    unit: "{token}",
    labels: [],
    help: "Tokens waiting to be encoded",
  },
  "latentwatch.alert_queue.depth": {
    kind: "gauge",
    unit: "{alert}",
    labels: ["sink"],
    help: "Alerts waiting to be published by a JetStream sink (memory and spool), by sink",
  },
  "latentwatch.encoder.provider": {
    kind: "gauge",
    unit: "{encoder}",
    labels: ["encoder", "provider"],
    help: "1 per encoder, labelled by encoder id and the execution provider it runs on " +
      "(cpu, webgpu, cuda)",
  },
  "latentwatch.requests.active": {
    kind: "gauge",
    unit: "{request}",
    labels: [],
    help: "Requests with live state",
  },
  // scale-out (docs/scale-out.md)
  "latentwatch.partitions.owned": {
    kind: "gauge",
    unit: "{partition}",
    labels: [],
    help: "Partitions this sidecar owns now",
  },
  "latentwatch.partition.owned": {
    kind: "gauge",
    unit: "{partition}",
    labels: ["partition"],
    help: "1 for each partition this sidecar owns, 0 once released, by partition",
  },
  "latentwatch.partition.acquired": {
    kind: "counter",
    unit: "{partition}",
    labels: [],
    help: "Partition leases taken",
  },
  "latentwatch.partition.released": {
    kind: "counter",
    unit: "{partition}",
    labels: ["reason"],
    help: "Partitions given up, by reason (rebalance, shutdown, lost, unrenewed)",
  },
  "latentwatch.partition.errors": {
    kind: "counter",
    unit: "{error}",
    labels: [],
    help:
      "Lease rounds or bucket reads that failed, and peers configured with another partition count",
  },
  "latentwatch.requests.handed_off": {
    kind: "counter",
    unit: "{request}",
    labels: [],
    help: "Requests whose window state was dropped because their partition went to another sidecar",
  },
  "latentwatch.requests.state_lost": {
    kind: "counter",
    unit: "{request}",
    labels: ["reason"],
    help: "Requests first seen mid-stream on a partitioned sidecar: their window state " +
      "before that frame is not here (the partition moved, or its first frames were lost)",
  },
  "latentwatch.frames.before_join": {
    kind: "counter",
    unit: "{frame}",
    labels: [],
    help: "Of requests.state_lost: the frames before the first one this sidecar saw " +
      "(processed by the previous owner, or sent while the partition had none)",
  },
  "latentwatch.build_info": {
    kind: "gauge",
    unit: "1",
    labels: ["version", "deno", "onnxruntime"],
    help: "Always 1, labelled with the versions of latentwatch, Deno and onnxruntime-node",
  },
} as const satisfies Record<string, MetricSpec>;

/** One latency histogram: unit (always seconds), help, label names and bucket bounds. */
export interface HistogramSpec {
  readonly unit: "s";
  readonly help: string;
  readonly labels: readonly string[];
  /** Upper bounds of the buckets, seconds, ascending (`+Inf` is implied). */
  readonly buckets: readonly number[];
}

/** Bounds for latencies from a millisecond to ten seconds. */
const LATENCY_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
] as const;

/**
 * The latency histograms, in seconds. In Prometheus `latentwatch.frame.latency`
 * is `latentwatch_frame_latency_seconds` (`_bucket`, `_sum`, `_count`).
 */
export const HISTOGRAM_SPEC = {
  "latentwatch.frame.latency": {
    unit: "s",
    help: "Seconds from a frame's arrival to the end of its policy evaluation",
    labels: [],
    buckets: LATENCY_BUCKETS,
  },
  "latentwatch.gate.latency": {
    unit: "s",
    help: "Seconds from a gated frame's arrival to the publication of its verdict",
    labels: [],
    buckets: LATENCY_BUCKETS,
  },
  "latentwatch.alert.ack_latency": {
    unit: "s",
    help: "Seconds from an alert's production to its acknowledgement by the JetStream stream, " +
      "by sink",
    labels: ["sink"],
    buckets: [...LATENCY_BUCKETS, 30, 60, 300],
  },
} as const satisfies Record<string, HistogramSpec>;

/** A metric name from {@linkcode METRIC_SPEC}. */
export type MetricName = keyof typeof METRIC_SPEC;

/** A histogram name from {@linkcode HISTOGRAM_SPEC}. */
export type HistogramName = keyof typeof HISTOGRAM_SPEC;

/**
 * The Prometheus name of a metric: dots become underscores, counters get
 * `_total`, histograms `_seconds`.
 *
 * @example
 * ```ts
 * promName("latentwatch.frames.dropped"); // "latentwatch_frames_dropped_total"
 * promName("latentwatch.frame.latency"); // "latentwatch_frame_latency_seconds"
 * ```
 */
export function promName(name: MetricName | HistogramName): string {
  const base = name.replace(/\./g, "_");
  if (name in HISTOGRAM_SPEC) return `${base}_seconds`;
  return METRIC_SPEC[name as MetricName].kind === "counter" ? `${base}_total` : base;
}
