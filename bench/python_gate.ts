/**
 * Inline gating with the Python tap on a real PyTorch model: the small GPT
 * of the end-to-end tests (`tests/python/tiny_gpt_e2e.py`, CPU, one
 * request), decode steps timed with the tap gated (each step waits for the
 * sidecar's verdict) and, in the same run, with no gate. The difference is
 * what gating adds per token. Skipped when no python3 imports torch.
 *
 * @module
 */
import { findPythonWithTorch } from "../support/python.ts";
import { torchFixture } from "../support/planted_model.ts";
import type { BenchResult } from "./run.ts";

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Time `steps` decode steps gated and ungated; one result row.
 *
 * @example
 * ```ts
 * const rows = await benchPythonGate({ quick: true, progress: console.error });
 * ```
 */
export async function benchPythonGate(
  opts: { quick: boolean; progress: (msg: string) => void },
): Promise<BenchResult[]> {
  if (!await findPythonWithTorch()) {
    opts.progress("no python3 with torch: skipping e2e/gate-python");
    return [];
  }
  // the same in --quick and full runs: a step's cost grows with the context
  const steps = 200;
  const f = await torchFixture();
  try {
    const time = async (gate: Record<string, unknown> | null) => {
      const r = await f.run({
        prompts: [[1, 2, 3, 4]],
        request_ids: [`bench-${gate ? "gated" : "ungated"}`],
        gate,
        max_new_tokens: steps,
        ctx: steps + 16,
      });
      return r.step_ms.slice(2).sort((a, b) => a - b); // the first steps warm up
    };
    opts.progress(`gate (python): ${steps} decode steps of the tiny GPT, ungated then gated`);
    const base = await time(null);
    const gated = await time({ deadline_ms: 1000, on_timeout: "open" });
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    opts.progress(
      `gate (python): step p50 ${pct(gated, 50).toFixed(3)} ms gated vs ${
        pct(base, 50).toFixed(3)
      } ms ungated (added ${(pct(gated, 50) - pct(base, 50)).toFixed(3)} ms per token)`,
    );
    return [{
      name: "e2e/gate-python-tiny-gpt/concurrency-1",
      tokens_per_s: 1000 / mean(gated),
      baseline_tokens_per_s: 1000 / mean(base),
      ratio: mean(base) / mean(gated),
      p50_ms: pct(gated, 50),
      p99_ms: pct(gated, 99),
      rss_mb: null,
    }];
  } finally {
    await f.stop();
  }
}

if (import.meta.main) {
  const rows = await benchPythonGate({
    quick: Deno.args.includes("--quick"),
    progress: (m) => console.error(`bench: ${m}`),
  });
  for (const r of rows) console.log(JSON.stringify(r));
}
