/**
 * The bench's charts as SVG, for docs/benchmarks.md:
 * - {@linkcode encodeChart}: encode throughput against batch size, one panel
 *   per SAE shape, latentwatch (f32 and bf16 weights) beside NumPy;
 * - {@linkcode latencyChart}: end-to-end p50/p99 latency against offered load,
 *   and the p99 of the floor measured beside a row (a bare subscriber).
 *
 * @module
 */
import type { BenchResult } from "./run.ts";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const fmt = (v: number) =>
  v >= 1e6
    ? `${+(v / 1e6).toFixed(1)}M`
    : v >= 1e3
    ? `${+(v / 1e3).toFixed(1)}k`
    : `${+v.toFixed(1)}`;

interface Series {
  label: string;
  color: string;
  dash?: string;
  points: [number, number][];
}

/** One log–log or lin–lin panel with its axes, ticks and polylines. */
function panel(
  x0: number,
  y0: number,
  w: number,
  h: number,
  title: string,
  series: Series[],
  opts: {
    logX: boolean;
    logY: boolean;
    xTicks: number[];
    xLabel: string;
    yLabel: string;
    xFmt?: (v: number) => string;
    hLine?: { y: number; label: string };
  },
): string[] {
  const pts = series.flatMap((s) => s.points);
  const ys = pts.map((p) => p[1]).concat(opts.hLine ? [opts.hLine.y] : []);
  const f = (v: number, log: boolean) => (log ? Math.log10(Math.max(v, 1e-9)) : v);
  const xMin = f(Math.min(...opts.xTicks), opts.logX),
    xMax = f(Math.max(...opts.xTicks), opts.logX);
  let yMin = opts.logY ? Math.floor(f(Math.min(...ys), true)) : 0;
  let yMax = opts.logY ? Math.ceil(f(Math.max(...ys), true)) : Math.max(...ys) * 1.1;
  if (yMax <= yMin) yMax = yMin + 1;
  if (!Number.isFinite(yMin)) yMin = 0;
  const px = (v: number) => x0 + ((f(v, opts.logX) - xMin) / (xMax - xMin || 1)) * w;
  const py = (v: number) => y0 + h - ((f(v, opts.logY) - yMin) / (yMax - yMin)) * h;
  const out: string[] = [
    `<text x="${x0 + w / 2}" y="${y0 - 8}" text-anchor="middle" font-size="12">${
      esc(title)
    }</text>`,
    `<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#333"/>`,
  ];
  const yTicks: number[] = [];
  if (opts.logY) { for (let e = yMin; e <= yMax; e++) yTicks.push(10 ** e); }
  else for (let i = 0; i <= 4; i++) yTicks.push((yMax * i) / 4);
  for (const t of yTicks) {
    out.push(
      `<line x1="${x0}" y1="${py(t)}" x2="${x0 + w}" y2="${py(t)}" stroke="#e2e2e2"/>`,
      `<text x="${x0 - 4}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`,
    );
  }
  for (const t of opts.xTicks) {
    out.push(
      `<text x="${px(t)}" y="${y0 + h + 14}" text-anchor="middle">${
        opts.xFmt ? opts.xFmt(t) : fmt(t)
      }</text>`,
    );
  }
  out.push(
    `<text x="${x0 + w / 2}" y="${y0 + h + 30}" text-anchor="middle">${esc(opts.xLabel)}</text>`,
    `<text x="${x0 - 44}" y="${y0 + h / 2}" text-anchor="middle" transform="rotate(-90 ${x0 - 44} ${
      y0 + h / 2
    })">${esc(opts.yLabel)}</text>`,
  );
  if (opts.hLine) {
    out.push(
      `<line x1="${x0}" y1="${py(opts.hLine.y)}" x2="${x0 + w}" y2="${
        py(opts.hLine.y)
      }" stroke="#c53030" stroke-dasharray="2 3"/>`,
      `<text x="${x0 + w - 4}" y="${py(opts.hLine.y) - 4}" text-anchor="end" fill="#c53030">${
        esc(opts.hLine.label)
      }</text>`,
    );
  }
  for (const s of series) {
    if (s.points.length === 0) continue;
    const p = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`);
    out.push(
      `<polyline points="${p.join(" ")}" fill="none" stroke="${s.color}" stroke-width="2"${
        s.dash ? ` stroke-dasharray="${s.dash}"` : ""
      }/>`,
      ...s.points.map(([x, y]) =>
        `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`
      ),
    );
  }
  return out;
}

function legend(x: number, y: number, series: Series[]): string[] {
  return series.flatMap((s, i) => [
    `<line x1="${x + i * 190}" y1="${y}" x2="${
      x + i * 190 + 24
    }" y2="${y}" stroke="${s.color}" stroke-width="2"${
      s.dash ? ` stroke-dasharray="${s.dash}"` : ""
    }/>`,
    `<text x="${x + i * 190 + 30}" y="${y + 4}">${esc(s.label)}</text>`,
  ]);
}

/**
 * Encode throughput (tokens/s, log scale) against batch size, one panel per
 * SAE shape: latentwatch with f32 and bf16 weights, NumPy (SAELens-style) on
 * the same weights.
 *
 * @example
 * ```ts
 * import type { BenchResult } from "./run.ts";
 * import { encodeChart } from "./chart.ts";
 * declare const results: BenchResult[];
 * const svg = encodeChart(results); // "<svg ...>...</svg>"
 * ```
 */
export function encodeChart(results: readonly BenchResult[]): string {
  const rows = results.filter((r) => r.name.startsWith("encode/"));
  const parse = (r: BenchResult) => {
    const m = /^encode\/(.+)-(f32|bf16)\/b(\d+)$/.exec(r.name);
    return m ? { shape: m[1], dtype: m[2], batch: Number(m[3]), r } : null;
  };
  const parsed = rows.map(parse).filter((p) => p !== null);
  const shapes = [...new Set(parsed.map((p) => p.shape))];
  const pw = 250, ph = 180, cols = Math.min(2, Math.max(1, shapes.length));
  const width = 90 + cols * (pw + 90);
  const height = 60 + Math.ceil(shapes.length / cols) * (ph + 80) + 30;
  const styles = [
    { label: "latentwatch, f32 weights", color: "#2b6cb0" },
    { label: "latentwatch, bf16 weights", color: "#38a169", dash: "6 3" },
    { label: "NumPy (SAELens way), f32", color: "#718096", dash: "2 3" },
  ];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="20" y="20" font-size="14">SAE encode throughput against batch size (tokens/s, log scale), same run</text>`,
  ];
  shapes.forEach((shape, i) => {
    const x0 = 80 + (i % cols) * (pw + 90), y0 = 60 + Math.floor(i / cols) * (ph + 80);
    const pts = (dtype: string, base: boolean) =>
      parsed.filter((p) => p.shape === shape && p.dtype === dtype)
        .map((p) => [p.batch, base ? p.r.baseline_tokens_per_s ?? 0 : p.r.tokens_per_s])
        .filter(([, v]) => v > 0)
        .sort((a, b) => a[0] - b[0]) as [number, number][];
    parts.push(...panel(x0, y0, pw, ph, shape, [
      { ...styles[0], points: pts("f32", false) },
      { ...styles[1], points: pts("bf16", false) },
      { ...styles[2], points: pts("f32", true) },
    ], {
      logX: true,
      logY: true,
      xTicks: [1, 16, 128],
      xLabel: "batch (tokens per call)",
      yLabel: "tokens/s",
    }));
  });
  parts.push(...legend(20, height - 16, styles.map((s) => ({ ...s, points: [] }))), "</svg>");
  return parts.join("\n") + "\n";
}

/**
 * End-to-end latency (frame published → evaluated, p50 and p99 ms) against
 * the offered load (% of the saturation rate), from the `e2e/…/load-Npct` rows, with the
 * issue's 5 ms p99 target, and where a row was measured beside its floor the
 * floor's p99 (`floor_p99_ms`: the transport and the machine alone, same seconds).
 *
 * @example
 * ```ts
 * import type { BenchResult } from "./run.ts";
 * import { latencyChart } from "./chart.ts";
 * declare const results: BenchResult[];
 * const svg = latencyChart(results);
 * ```
 */
export function latencyChart(results: readonly BenchResult[]): string {
  const load = results.filter((r) => /^e2e\/serve-.*\/load-\d+pct$/.test(r.name));
  const groups = [...new Set(load.map((r) => r.name.split("/")[1]))];
  const colors = ["#dd6b20", "#2b6cb0"];
  const series: Series[] = groups.flatMap((g, i) => {
    const rs = load.filter((r) => r.name.split("/")[1] === g)
      .sort((a, b) => (a.load_fraction ?? 0) - (b.load_fraction ?? 0));
    const sat = results.find((r) => r.name === `e2e/${g}/saturation`)?.tokens_per_s;
    const pts = (f: (r: BenchResult) => number | null) =>
      rs.filter((r) => f(r) !== null).map((r) => [100 * (r.load_fraction ?? 0), f(r)!]) as [
        number,
        number,
      ][];
    const short = `${g.replace(/^serve-/, "")}${sat ? ` (saturation ${fmt(sat)} tokens/s)` : ""}`;
    const floor = pts((r) => r.floor_p99_ms ?? null);
    return [
      { label: `${short}: p50`, color: colors[i % 2], points: pts((r) => r.p50_ms) },
      {
        label: `${short}: p99`,
        color: colors[i % 2],
        dash: "6 3",
        points: pts((r) => r.p99_ms),
      },
      ...(floor.length > 0
        ? [{
          label: `${short}: p99 of the floor beside it (a bare subscriber)`,
          color: "#718096",
          dash: "2 3",
          points: floor,
        }]
        : []),
    ];
  });
  const width = 760, height = 330 + 18 * series.length;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="20" y="20" font-size="14">serve end to end: latency (frame published → evaluated, ms, log scale) against load</text>`,
    ...panel(80, 50, 640, 220, "", series, {
      logX: false,
      logY: true,
      xTicks: [0, 10, 25, 50, 75, 100],
      xFmt: (v) => `${v}%`,
      xLabel: "offered load, % of that monitor's saturation rate (open loop, frames of 16 tokens)",
      yLabel: "latency (ms)",
      hLine: { y: 5, label: "p99 target 5 ms" },
    }),
    ...series.flatMap((s, i) => legend(20, 330 + 18 * i, [s])),
    "</svg>",
  ];
  return parts.join("\n") + "\n";
}
