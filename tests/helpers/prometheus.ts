/**
 * A small, independent reader of the Prometheus text exposition (format
 * 0.0.4) for tests: samples with their labels, `# TYPE` lines, and
 * histograms checked for what the format promises (cumulative buckets,
 * `+Inf` equal to `_count`).
 *
 * @module
 */
import assert from "node:assert/strict";

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition. */
export interface Exposition {
  samples: Sample[];
  /** `# TYPE` of each metric family. */
  types: Map<string, string>;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;

/** Parse a text exposition; throws on a line that is neither a comment nor a sample. */
export function parsePrometheus(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const t = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (t) types.set(t[1], t[2]);
      continue;
    }
    const m = LINE.exec(line);
    if (!m) throw new Error(`expected a sample line, found ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(LABEL)) {
      labels[k] = v.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return { samples, types };
}

function matches(s: Sample, labels: Record<string, string>): boolean {
  return Object.entries(labels).every(([k, v]) => s.labels[k] === v);
}

/** The value of the one sample `name` whose labels are exactly `labels`; throws when absent. */
export function sampleValue(
  e: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = e.samples.filter((s) =>
    s.name === name && matches(s, labels) &&
    Object.keys(s.labels).length === Object.keys(labels).length
  );
  assert.equal(found.length, 1, `one sample ${name}${JSON.stringify(labels)}`);
  return found[0].value;
}

/**
 * The histogram `name` (its `_bucket`, `_sum`, `_count` series with
 * `labels`), after checking it is declared a histogram, its buckets are
 * cumulative and ascending, and `le="+Inf"` equals `_count`.
 */
export function histogram(
  e: Exposition,
  name: string,
  labels: Record<string, string> = {},
): { buckets: [number, number][]; sum: number; count: number } {
  assert.equal(e.types.get(name), "histogram", `# TYPE ${name} histogram`);
  const buckets = e.samples
    .filter((s) => s.name === `${name}_bucket` && matches(s, labels))
    .map((
      s,
    ): [number, number] => [s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value]);
  assert.ok(buckets.length > 1, `${name} has buckets`);
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i][0] > buckets[i - 1][0], `${name}: bounds ascend`);
    assert.ok(buckets[i][1] >= buckets[i - 1][1], `${name}: buckets are cumulative`);
  }
  assert.equal(buckets.at(-1)![0], Infinity, `${name}: the last bucket is +Inf`);
  const count = sampleValue(e, `${name}_count`, labels);
  assert.equal(buckets.at(-1)![1], count, `${name}: +Inf bucket equals _count`);
  return { buckets, sum: sampleValue(e, `${name}_sum`, labels), count };
}
