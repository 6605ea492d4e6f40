/**
 * Draw the encode results as an SVG bar chart (tokens/s by batch size,
 * latentwatch beside the NumPy baseline), for docs/benchmarks.md.
 *
 * @module
 */
import type { BenchResult } from "./run.ts";

/**
 * Render grouped bars: one group per `encode/<shape>/b<batch>` result.
 *
 * @example
 * ```ts
 * const svg = encodeChart(results); // "<svg ...>...</svg>"
 * ```
 */
export function encodeChart(results: readonly BenchResult[]): string {
  const rows = results.filter((r) => r.name.startsWith("encode/"));
  const max = Math.max(1, ...rows.flatMap((r) => [r.tokens_per_s, r.baseline_tokens_per_s ?? 0]));
  const barW = 18, gap = 26, left = 70, top = 44, h = 220;
  const width = Math.max(560, left + rows.length * (2 * barW + gap) + 20);
  const y = (v: number) => top + h - (v / max) * h;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      top + h + 90
    }" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="16" font-size="13">SAE encode throughput (tokens/s), latentwatch vs NumPy, same run</text>`,
    `<line x1="${left}" y1="${top + h}" x2="${width - 10}" y2="${top + h}" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    parts.push(
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`,
      `<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#ddd"/>`,
    );
  }
  rows.forEach((r, i) => {
    const x = left + 10 + i * (2 * barW + gap);
    const base = r.baseline_tokens_per_s ?? 0;
    parts.push(
      `<rect x="${x}" y="${y(r.tokens_per_s)}" width="${barW}" height="${
        top + h - y(r.tokens_per_s)
      }" fill="#2b6cb0"/>`,
      `<rect x="${x + barW}" y="${y(base)}" width="${barW}" height="${
        top + h - y(base)
      }" fill="#a0aec0"/>`,
    );
    const [, shape, batch] = r.name.split("/");
    parts.push(
      `<text x="${x + barW}" y="${top + h + 14}" text-anchor="middle">${batch}</text>`,
      `<text x="${x + barW}" y="${top + h + 28}" text-anchor="middle" font-size="9">${
        shape.split("-")[0]
      }</text>`,
    );
    if (r.ratio !== null) {
      parts.push(
        `<text x="${x + barW}" y="${y(Math.max(r.tokens_per_s, base)) - 4}" text-anchor="middle">${
          r.ratio.toFixed(2)
        }×</text>`,
      );
    }
  });
  const ly = top + h + 50;
  parts.push(
    `<rect x="${left}" y="${ly}" width="12" height="12" fill="#2b6cb0"/><text x="${left + 18}" y="${
      ly + 10
    }">latentwatch (onnxruntime CPU)</text>`,
    `<rect x="${left + 220}" y="${ly}" width="12" height="12" fill="#a0aec0"/><text x="${
      left + 238
    }" y="${ly + 10}">NumPy baseline</text>`,
    "</svg>",
  );
  return parts.join("\n") + "\n";
}
