/**
 * The sidecar's telemetry, declared once as a spec (name, kind, unit, help)
 * and recorded two ways: in-process counters that the control API serves
 * (`/metrics`, Prometheus text; `/stats`, JSON) and OpenTelemetry instruments
 * that Deno exports when `OTEL_DENO=true`.
 *
 * @module
 */
import { type Counter, metrics as otelMetrics, type UpDownCounter } from "@opentelemetry/api";

/** Every metric the sidecar emits. Names follow OTel conventions (no `_total`). */
export const METRIC_SPEC = {
  "latentwatch.frames.received": {
    kind: "counter",
    unit: "{frame}",
    help: "Frames received from the tap",
  },
  "latentwatch.frames.rejected": {
    kind: "counter",
    unit: "{frame}",
    help: "Frames rejected by the decoder, by reason (the offending field)",
  },
  "latentwatch.frames.dropped": {
    kind: "counter",
    unit: "{frame}",
    help: "Valid frames dropped, by reason",
  },
  "latentwatch.frames.lost": {
    kind: "counter",
    unit: "{frame}",
    help: "Frames the tap sent that never arrived (gaps in Lw-Seq)",
  },
  "latentwatch.frames.lost_at_restart": {
    kind: "counter",
    unit: "{frame}",
    help: "Of frames.lost: frames of requests a previous run was following that no run processed " +
      "(queued when it died, or sent while no sidecar listened)",
  },
  "latentwatch.checkpoint.errors": {
    kind: "counter",
    unit: "{write}",
    help: "Per-request seq checkpoints that could not be written",
  },
  "latentwatch.frames.out_of_order": {
    kind: "counter",
    unit: "{frame}",
    help: "Frames that arrived late or repeated (Lw-Seq below the next expected)",
  },
  "latentwatch.requests.evicted": {
    kind: "counter",
    unit: "{request}",
    help: "Request states evicted before their end marker, by reason (ttl, capacity)",
  },
  "latentwatch.policy.reloads": {
    kind: "counter",
    unit: "{reload}",
    help: "Policy reloads, by result (ok, refused)",
  },
  "latentwatch.trace.dropped": {
    kind: "counter",
    unit: "{frame}",
    help: "Frames the trace recorder could not write, by reason",
  },
  "latentwatch.policy.requests": {
    kind: "gauge",
    unit: "{request}",
    help: "Requests with policy state (windows, suppression)",
  },
  "latentwatch.policy.suppressed": {
    kind: "counter",
    unit: "{firing}",
    help: "Rule firings held back by suppression (dedup)",
  },
  "latentwatch.policy.rate_limited": {
    kind: "counter",
    unit: "{firing}",
    help: "Rule firings held back by a rule's rate limit",
  },
  "latentwatch.policy.excepted": {
    kind: "counter",
    unit: "{firing}",
    help: "Rule firings skipped by an exception",
  },
  "latentwatch.policy.evicted": {
    kind: "counter",
    unit: "{request}",
    help: "Policy request states evicted before their end marker, by reason (ttl, capacity)",
  },
  "latentwatch.steer.planned": {
    kind: "counter",
    unit: "{command}",
    help: "Steering commands rules asked for, by rule (also carried on their alerts)",
  },
  "latentwatch.steer.sent": {
    kind: "counter",
    unit: "{command}",
    help: "Steering commands sent to taps, by operation and route (subject, or in a gate verdict)",
  },
  "latentwatch.evidence.tokens": {
    kind: "counter",
    unit: "{token}",
    help: "Flagged tokens encoded in full for the evidence on alerts, by SAE",
  },
  "latentwatch.evidence.missing": {
    kind: "counter",
    unit: "{token}",
    help: "Flagged tokens sent without top latents, by reason (not_in_ring, encode_error)",
  },
  "latentwatch.evaluate.errors": {
    kind: "counter",
    unit: "{frame}",
    help:
      "Frames whose policy evaluation failed (logged with the request; a gated frame gets an error verdict)",
  },
  "latentwatch.pipeline.errors": {
    kind: "counter",
    unit: "{error}",
    help:
      "Errors caught in the pipeline, by stage (on_alert, sink_submit, release, batch, tap): logged, processing goes on",
  },
  "latentwatch.steer.repeats": {
    kind: "counter",
    unit: "{command}",
    help: "Steer actions not sent again because the rule already steered that request",
  },
  "latentwatch.steer.acks": {
    kind: "counter",
    unit: "{ack}",
    help:
      "Acknowledgements from taps, by status (applied, rejected, expired, not_applied, malformed)",
  },
  "latentwatch.steer.errors": {
    kind: "counter",
    unit: "{command}",
    help: "Steering commands not sent, by reason (disabled, unresolved, publish)",
  },
  "latentwatch.gate.replies": {
    kind: "counter",
    unit: "{reply}",
    help: "Verdicts sent to gated frames, by verdict (continue, steer, abort, error)",
  },
  "latentwatch.bus.errors": {
    kind: "counter",
    unit: "{error}",
    help: "Subscription and connection errors",
  },
  "latentwatch.tokens.dropped": {
    kind: "counter",
    unit: "{token}",
    help: "Tokens in dropped frames",
  },
  "latentwatch.tokens.encoded": {
    kind: "counter",
    unit: "{token}",
    help: "Tokens encoded, by SAE",
  },
  "latentwatch.batches": { kind: "counter", unit: "{batch}", help: "Micro-batches encoded" },
  "latentwatch.encode.errors": {
    kind: "counter",
    unit: "{batch}",
    help: "Batches whose encode failed",
  },
  "latentwatch.alerts": {
    kind: "counter",
    unit: "{alert}",
    help: "Alerts raised, by rule and severity",
  },
  "latentwatch.alerts.published": {
    kind: "counter",
    unit: "{alert}",
    help: "Alerts acknowledged by the stream, by sink (jetstream, or a rendered jetstream sink)",
  },
  "latentwatch.alerts.duplicate": {
    kind: "counter",
    unit: "{alert}",
    help: "Alert publishes the stream reported as duplicates (already stored), by sink",
  },
  "latentwatch.alerts.dropped": {
    kind: "counter",
    unit: "{alert}",
    help: "Alerts dropped, by reason and sink (every sink's drops are counted here)",
  },
  "latentwatch.alerts.publish_retries": {
    kind: "counter",
    unit: "{attempt}",
    help: "Alert publish retries, by sink",
  },
  "latentwatch.queue.depth": {
    kind: "gauge",
    unit: "{token}",
    help: "Tokens waiting to be encoded",
  },
  "latentwatch.alert_queue.depth": {
    kind: "gauge",
    unit: "{alert}",
    help: "Alerts waiting to be published by a JetStream sink (memory and spool), by sink",
  },
  "latentwatch.encoder.provider": {
    kind: "gauge",
    unit: "{encoder}",
    help: "1 per encoder, labelled by encoder id and the execution provider it runs on " +
      "(cpu, webgpu, cuda)",
  },
  "latentwatch.requests.active": {
    kind: "gauge",
    unit: "{request}",
    help: "Requests with live state",
  },
  // scale-out (docs/scale-out.md)
  "latentwatch.partitions.owned": {
    kind: "gauge",
    unit: "{partition}",
    help: "Partitions this sidecar owns now",
  },
  "latentwatch.partition.owned": {
    kind: "gauge",
    unit: "{partition}",
    help: "1 for each partition this sidecar owns, 0 once released, by partition",
  },
  "latentwatch.partition.acquired": {
    kind: "counter",
    unit: "{partition}",
    help: "Partition leases taken",
  },
  "latentwatch.partition.released": {
    kind: "counter",
    unit: "{partition}",
    help: "Partitions given up, by reason (rebalance, shutdown, lost, unrenewed)",
  },
  "latentwatch.partition.errors": {
    kind: "counter",
    unit: "{error}",
    help: "Lease rounds that failed (store unreachable) and peers configured differently",
  },
  "latentwatch.requests.handed_off": {
    kind: "counter",
    unit: "{request}",
    help: "Requests whose window state was dropped because their partition went to another sidecar",
  },
  "latentwatch.requests.state_lost": {
    kind: "counter",
    unit: "{request}",
    help: "Requests first seen mid-stream on a partitioned sidecar: their window state " +
      "before that frame is not here (the partition moved, or its first frames were lost)",
  },
  "latentwatch.frames.before_join": {
    kind: "counter",
    unit: "{frame}",
    help: "Of requests.state_lost: the frames before the first one this sidecar saw " +
      "(processed by the previous owner, or sent while the partition had none)",
  },
} as const;

/** A metric name from {@linkcode METRIC_SPEC}. */
export type MetricName = keyof typeof METRIC_SPEC;
type Labels = Record<string, string>;

function labelKey(labels?: Labels): string {
  if (!labels) return "";
  return Object.keys(labels).sort().map((k) => `${k}="${labels[k].replace(/["\\\n]/g, "_")}"`).join(
    ",",
  );
}

/**
 * Counters and gauges with labels, mirrored to OpenTelemetry.
 *
 * @example
 * ```ts
 * const t = new Telemetry();
 * t.add("latentwatch.frames.rejected", 1, { reason: "Lw-Dtype" });
 * t.value("latentwatch.frames.rejected", { reason: "Lw-Dtype" }); // 1
 * ```
 */
export class Telemetry {
  #values = new Map<MetricName, Map<string, number>>();
  #otel = new Map<MetricName, Counter | UpDownCounter>();

  constructor() {
    const meter = otelMetrics.getMeter("latentwatch", "0.1.0");
    for (
      const [name, spec] of Object.entries(METRIC_SPEC) as [
        MetricName,
        (typeof METRIC_SPEC)[MetricName],
      ][]
    ) {
      this.#values.set(name, new Map());
      const opts = { unit: spec.unit, description: spec.help };
      this.#otel.set(
        name,
        spec.kind === "counter"
          ? meter.createCounter(name, opts)
          : meter.createUpDownCounter(name, opts),
      );
    }
  }

  /** Add `delta` to a counter (or gauge). */
  add(name: MetricName, delta = 1, labels?: Labels): void {
    const series = this.#values.get(name)!;
    const key = labelKey(labels);
    series.set(key, (series.get(key) ?? 0) + delta);
    this.#otel.get(name)!.add(delta, labels);
  }

  /** Set a gauge to `value`. */
  set(name: MetricName, value: number, labels?: Labels): void {
    const series = this.#values.get(name)!;
    const key = labelKey(labels);
    const delta = value - (series.get(key) ?? 0);
    if (delta !== 0) this.add(name, delta, labels);
  }

  /** Current value of one series (0 when never touched). */
  value(name: MetricName, labels?: Labels): number {
    return this.#values.get(name)!.get(labelKey(labels)) ?? 0;
  }

  /** Sum over every label set of a metric. */
  total(name: MetricName): number {
    let s = 0;
    for (const v of this.#values.get(name)!.values()) s += v;
    return s;
  }

  /** Every series as `{ "name{labels}": value }`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, series] of this.#values) {
      for (const [key, v] of series) out[key ? `${name}{${key}}` : name] = v;
    }
    return out;
  }

  /** Prometheus text exposition (dots become underscores; counters get `_total`). */
  prometheus(): string {
    const lines: string[] = [];
    for (const [name, series] of this.#values) {
      const spec = METRIC_SPEC[name];
      const prom = name.replace(/\./g, "_") + (spec.kind === "counter" ? "_total" : "");
      lines.push(`# HELP ${prom} ${spec.help}`, `# TYPE ${prom} ${spec.kind}`);
      if (series.size === 0) lines.push(`${prom} 0`);
      for (const [key, v] of series) lines.push(key ? `${prom}{${key}} ${v}` : `${prom} ${v}`);
    }
    return lines.join("\n") + "\n";
  }
}
