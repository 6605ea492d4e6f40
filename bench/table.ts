/**
 * The Markdown table `deno task bench` prints: one line per result row.
 *
 * @module
 */
import type { BenchResult } from "./run.ts";

/**
 * One Markdown line per row: the row's figure (tokens/s, alerts/s or times),
 * its baseline and ratio, GFLOP/s and % of the best measured peak, the
 * encode path and its fallbacks, latency percentiles and RSS.
 *
 * @example
 * ```ts
 * console.log(resultsTable([{
 *   name: "encode/x/b1", tokens_per_s: 1000, baseline_tokens_per_s: 500, ratio: 2,
 *   p50_ms: 1, p99_ms: 2, rss_mb: 300, path: "f32", fallbacks: 0,
 * }]));
 * ```
 */
export function resultsTable(results: BenchResult[]): string {
  const f = (v: number | null | undefined, d = 0) =>
    v === null || v === undefined ? "—" : v.toFixed(d);
  const rows = results.map((r) =>
    `| ${r.name} | ${
      r.alerts_per_s !== undefined
        ? `${r.alerts_per_s} alerts/s`
        : r.compile_ms !== undefined
        ? `parse ${r.parse_ms} ms, compile ${r.compile_ms} ms`
        : r.max_healthz_ms !== undefined
        ? `reload ${r.reload_ms} ms, slowest /healthz ${r.max_healthz_ms} ms`
        : f(r.tokens_per_s)
    } | ${
      r.baseline_alerts_per_s !== undefined
        ? `${r.baseline_alerts_per_s} alerts/s`
        : f(r.baseline_tokens_per_s)
    } | ${r.ratio === null ? "—" : `${r.ratio.toFixed(2)}×`} | ${f(r.gflops, 1)} | ${
      r.pct_of_peak === null || r.pct_of_peak === undefined
        ? "—"
        : `${(100 * r.pct_of_peak).toFixed(0)}%`
    } | ${r.path === undefined ? "—" : `${r.path} (${r.fallbacks ?? 0})`} | ${f(r.p50_ms, 2)} | ${
      f(r.p99_ms, 2)
    }${latencySplitText(r)} | ${f(r.rss_mb)} |`
  );
  return [
    "| benchmark | tokens/s | baseline tokens/s | ratio | GFLOP/s | % of peak | path (fallbacks) | p50 ms | p99 ms | RSS MB |",
    "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ...rows,
  ].join("\n");
}

/**
 * An e2e row's p99 split at the sidecar's door, as ` (to the sidecar X, in it Y)`,
 * its floor's p99 where it was measured beside one (`; floor Z`) and, in a
 * paired row, the p99 of what the sidecar added to each frame (`; added per
 * frame … W`); empty for rows without a split. Each is its own p99
 * (percentiles do not add up).
 *
 * @example
 * ```ts
 * latencySplitText({
 *   name: "e2e/x/load-50pct", tokens_per_s: 1000, baseline_tokens_per_s: null, ratio: null,
 *   p50_ms: 1, p99_ms: 4, rss_mb: null, to_sidecar_p99_ms: 3, in_sidecar_p99_ms: 1,
 * }); // " (to the sidecar 3.00, in it 1.00)"
 * ```
 */
export function latencySplitText(r: BenchResult): string {
  if (r.to_sidecar_p99_ms == null || r.in_sidecar_p99_ms == null) return "";
  const floor = r.floor_p99_ms == null ? "" : `; floor ${r.floor_p99_ms.toFixed(2)}`;
  const added = r.frame_added_p99_ms == null
    ? ""
    : `; added per frame over a bare subscriber of the same frames ${
      r.frame_added_p99_ms.toFixed(2)
    }`;
  return ` (to the sidecar ${r.to_sidecar_p99_ms.toFixed(2)}, in it ${
    r.in_sidecar_p99_ms.toFixed(2)
  }${floor}${added})`;
}
