/** The bench's latency chart: a series per figure, the floor's only where it was measured. */
import assert from "node:assert/strict";
import { latencyChart } from "./chart.ts";
import type { BenchResult } from "./run.ts";

const row = (name: string, extra: Partial<BenchResult> = {}): BenchResult => ({
  name,
  tokens_per_s: 1000,
  baseline_tokens_per_s: null,
  ratio: null,
  p50_ms: 0.3,
  p99_ms: 2,
  rss_mb: 500,
  ...extra,
});

/** The points of each polyline, in the order drawn. */
const polylines = (svg: string) =>
  [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1].split(" ").length);

Deno.test("latencyChart: p50 and p99 per monitor, and the floor's p99 where rows have one", () => {
  const svg = latencyChart([
    row("e2e/serve-a/saturation", { tokens_per_s: 80_000 }),
    row("e2e/serve-a/load-25pct", { load_fraction: 0.25, floor_p99_ms: 1.5 }),
    row("e2e/serve-a/floor-25pct", { load_fraction: 0.25 }),
    row("e2e/serve-a/load-50pct", { load_fraction: 0.5, floor_p99_ms: 3 }),
    row("e2e/serve-a/load-75pct", { load_fraction: 0.75 }),
    row("e2e/serve-b/load-50pct", { load_fraction: 0.5 }),
  ]);
  // monitor a: p50 and p99 over three loads, the floor at the two it was measured at; b: one load
  assert.deepEqual(polylines(svg), [3, 3, 2, 1, 1]);
  assert.equal(svg.match(/p99 of the floor beside it/g)?.length, 1);
  assert.ok(svg.includes("a (saturation 80k tokens/s): p99"));
  // the floor rows themselves are not a monitor's load
  assert.ok(!svg.includes("floor-25pct"));
});
