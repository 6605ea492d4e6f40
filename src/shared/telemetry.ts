/**
 * The sidecar's telemetry, declared once as a spec (`./metric_spec.ts`) and
 * recorded two ways: in-process series that the control API serves
 * (`/metrics`, Prometheus text written by prom-client; `/stats`, JSON) and
 * OpenTelemetry instruments that Deno exports when `OTEL_DENO=true`.
 * Counters and gauges live here (so `/stats` and tests read them); prom-client
 * reads them at each scrape. Latency histograms go to both at once.
 *
 * @module
 */
import {
  type Counter,
  type Histogram,
  metrics as otelMetrics,
  type UpDownCounter,
} from "@opentelemetry/api";
import client from "prom-client";
import {
  HISTOGRAM_SPEC,
  type HistogramName,
  METRIC_SPEC,
  type MetricName,
  promName,
} from "./metric_spec.ts";
import { buildInfo, VERSION } from "./version.ts";

export { HISTOGRAM_SPEC, type HistogramName, METRIC_SPEC, type MetricName, promName };

/** A metric was given a label its spec does not declare. */
export class MetricLabelError extends TypeError {
  constructor(name: string, expected: readonly string[], found: string) {
    super(
      `${name}: expected labels among [${expected.join(", ")}], found '${found}' ` +
        "(declare it in src/shared/metric_spec.ts)",
    );
    this.name = "MetricLabelError";
  }
}

type Labels = Record<string, string>;

/** One series: its labels and current value. */
interface Series {
  labels: Labels;
  value: number;
}

/** A label's part of a series key: `name="value"`, with `"`, `\\` and newlines made `_`. */
const labelPart = (k: string, v: string) => `${k}="${v.replace(/["\\\n]/g, "_")}"`;

/**
 * Keys of one-label series made before (name → value → key): most metrics
 * are counted per batch or frame with one label from a small set, so the key
 * is not built again each time. Bounded: emptied when full.
 */
const singleLabelKeys = new Map<string, Map<string, string>>();
const SINGLE_LABEL_KEYS_LIMIT = 4096;
let singleLabelKeyCount = 0;

function labelKey(labels?: Labels): string {
  if (!labels) return "";
  let only = "", count = 0;
  for (const k in labels) {
    if (!Object.hasOwn(labels, k)) continue;
    only = k;
    if (++count > 1) break;
  }
  if (count === 0) return "";
  if (count > 1) return Object.keys(labels).sort().map((k) => labelPart(k, labels[k])).join(",");
  const value = labels[only];
  let byValue = singleLabelKeys.get(only);
  let key = byValue?.get(value);
  if (key === undefined) {
    if (singleLabelKeyCount >= SINGLE_LABEL_KEYS_LIMIT) {
      singleLabelKeys.clear();
      singleLabelKeyCount = 0;
      byValue = undefined;
    }
    if (byValue === undefined) singleLabelKeys.set(only, byValue = new Map());
    byValue.set(value, key = labelPart(only, value));
    singleLabelKeyCount++;
  }
  return key;
}

/**
 * Counters, gauges and latency histograms with labels, mirrored to
 * OpenTelemetry; `latentwatch.build_info` is 1 from the start.
 *
 * @example
 * ```ts
 * const t = new Telemetry();
 * t.add("latentwatch.frames.rejected", 1, { reason: "Lw-Dtype" });
 * t.value("latentwatch.frames.rejected", { reason: "Lw-Dtype" }); // 1
 * t.observe("latentwatch.frame.latency", 0.004);
 * const text = await t.prometheus(); // latentwatch_frame_latency_seconds_count 1, ...
 * ```
 */
export class Telemetry {
  #values = new Map<MetricName, Map<string, Series>>();
  #otel = new Map<MetricName, Counter | UpDownCounter>();
  #otelHistograms = new Map<HistogramName, Histogram>();
  #histograms = new Map<HistogramName, client.Histogram>();
  readonly #registry = new client.Registry();

  constructor() {
    const meter = otelMetrics.getMeter("latentwatch", VERSION);
    for (
      const [name, spec] of Object.entries(METRIC_SPEC) as [
        MetricName,
        (typeof METRIC_SPEC)[MetricName],
      ][]
    ) {
      const series = new Map<string, Series>();
      this.#values.set(name, series);
      const opts = { unit: spec.unit, description: spec.help };
      this.#otel.set(
        name,
        spec.kind === "counter"
          ? meter.createCounter(name, opts)
          : meter.createUpDownCounter(name, opts),
      );
      const config = {
        name: promName(name),
        help: spec.help,
        labelNames: [...spec.labels],
        registers: [this.#registry],
      };
      // prom-client reads the series at each scrape; an untouched metric shows 0
      if (spec.kind === "counter") {
        new client.Counter({
          ...config,
          collect() {
            this.reset();
            if (series.size === 0) this.inc({}, 0);
            for (const s of series.values()) this.inc(s.labels, Math.max(0, s.value));
          },
        });
      } else {
        new client.Gauge({
          ...config,
          collect() {
            this.reset();
            if (series.size === 0) this.set({}, 0);
            for (const s of series.values()) this.set(s.labels, s.value);
          },
        });
      }
    }
    for (
      const [name, spec] of Object.entries(HISTOGRAM_SPEC) as [
        HistogramName,
        (typeof HISTOGRAM_SPEC)[HistogramName],
      ][]
    ) {
      this.#histograms.set(
        name,
        new client.Histogram({
          name: promName(name),
          help: spec.help,
          labelNames: [...spec.labels],
          buckets: [...spec.buckets],
          registers: [this.#registry],
        }),
      );
      this.#otelHistograms.set(
        name,
        meter.createHistogram(name, {
          unit: spec.unit,
          description: spec.help,
          advice: { explicitBucketBoundaries: [...spec.buckets] },
        }),
      );
    }
    const b = buildInfo();
    this.set("latentwatch.build_info", 1, {
      version: b.version,
      deno: b.deno,
      onnxruntime: b.onnxruntime,
    });
  }

  /** Add `delta` to a counter (or gauge). Throws {@linkcode MetricLabelError} for an undeclared label. */
  add(name: MetricName, delta = 1, labels?: Labels): void {
    const series = this.#values.get(name)!;
    const key = labelKey(labels);
    let s = series.get(key);
    if (!s) {
      checkLabels(name, METRIC_SPEC[name].labels, labels);
      series.set(key, s = { labels: { ...labels }, value: 0 });
    }
    s.value += delta;
    this.#otel.get(name)!.add(delta, labels);
  }

  /** Set a gauge to `value`. */
  set(name: MetricName, value: number, labels?: Labels): void {
    const delta = value - this.value(name, labels);
    if (delta !== 0) this.add(name, delta, labels);
  }

  /** Record one latency, in seconds, in a histogram (Prometheus and OpenTelemetry). */
  observe(name: HistogramName, seconds: number, labels?: Labels): void {
    checkLabels(name, HISTOGRAM_SPEC[name].labels, labels);
    const v = Math.max(0, seconds);
    this.#histograms.get(name)!.observe(labels ?? {}, v);
    this.#otelHistograms.get(name)!.record(v, labels);
  }

  /** Current value of one series (0 when never touched). */
  value(name: MetricName, labels?: Labels): number {
    return this.#values.get(name)!.get(labelKey(labels))?.value ?? 0;
  }

  /** Sum over every label set of a metric. */
  total(name: MetricName): number {
    let t = 0;
    for (const s of this.#values.get(name)!.values()) t += s.value;
    return t;
  }

  /** Every counter and gauge series as `{ "name{labels}": value }`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, series] of this.#values) {
      for (const [key, s] of series) out[key ? `${name}{${key}}` : name] = s.value;
    }
    return out;
  }

  /**
   * Prometheus text exposition, by prom-client: dots become underscores,
   * counters get `_total`, histograms `_seconds` ({@linkcode promName}).
   */
  prometheus(): Promise<string> {
    return this.#registry.metrics();
  }

  /** The Content-Type of {@linkcode Telemetry.prometheus}'s text. */
  get contentType(): string {
    return this.#registry.contentType;
  }
}

function checkLabels(name: string, declared: readonly string[], labels?: Labels): void {
  for (const k of Object.keys(labels ?? {})) {
    if (!declared.includes(k)) throw new MetricLabelError(name, declared, k);
  }
}
