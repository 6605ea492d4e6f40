/**
 * Policy evaluation cost per token with 1, 100 and 1000 rules on realistic
 * sparse latents: a 24576-wide SAE with about 60 active latents per token
 * (values ~ |N(0, 2)|), rules watching random latents with mixed pooling
 * (token, max, mean, rolling_mean_max, EMA, count; some with a guard),
 * 64 concurrent requests sending 16-token frames. Run alone with
 * `deno run -A bench/policy.ts [--quick]`.
 *
 * @module
 */
import { Rng } from "../src/core/random.ts";
import type { SparseLatents } from "../src/core/sae.ts";
import type { Pool, RuleDef, SignalTest } from "../src/core/policy/ast.ts";
import { compilePolicySet } from "../src/core/policy/compile.ts";
import { PolicyEngine, type TokenBatch } from "../src/core/policy/engine.ts";
import type { BenchResult } from "./run.ts";

const D_SAE = 24576;
const ACTIVE = 60;
const FRAME = 16;
const REQUESTS = 64;
/** Frames evaluated before each row is timed (see the warm-up in {@linkcode benchPolicy}). */
const WARMUP_FRAMES = 5000;

function rows(rng: Rng, n: number): SparseLatents[] {
  return Array.from({ length: n }, () => {
    const set = new Set<number>();
    while (set.size < ACTIVE) set.add(Math.floor(rng.uniform() * D_SAE));
    const indices = Uint32Array.from(set).sort();
    const values = Float32Array.from(indices, () => Math.abs(rng.gaussian()) * 2);
    return { indices, values };
  });
}

function rules(rng: Rng, n: number): RuleDef[] {
  const source = { file: "bench.yaml", line: 1 };
  const pools: Pool[] = [
    { kind: "token" },
    { kind: "max", window: 16 },
    { kind: "mean", window: 32 },
    { kind: "rolling_mean_max", window: 8 },
    { kind: "ema", halfLife: 16 },
    { kind: "count", window: 32, above: 1 },
  ];
  const t = (threshold: number, op: "above" | "below" = "above"): SignalTest => ({
    kind: "test",
    signal: { kind: "latent", sae: "res", index: Math.floor(rng.uniform() * D_SAE) },
    pool: pools[Math.floor(rng.uniform() * pools.length)],
    op,
    threshold,
    source,
  });
  return Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    title: `rule ${i}`,
    severity: "high",
    tags: [],
    scope: "both",
    condition: i % 4 === 0
      ? { kind: "all", of: [t(1), { kind: "not", of: t(3), source }], source }
      : t(1.5),
    exceptions: [],
    actions: [{ kind: "alert" }],
    throttle: { suppress: { kind: "request" }, dedupKey: "{request_id}" },
    enabled: true,
    source,
  }));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Measure evaluation throughput (tokens/s) and per-frame latency for 1, 100
 * and 1000 rules.
 *
 * @example
 * ```ts
 * const results = await benchPolicy({ quick: true });
 * ```
 */
export async function benchPolicy(_opts: { quick: boolean }): Promise<BenchResult[]> {
  // the same in --quick and full runs: --quick runs fewer rows, not shorter ones
  const seconds = 0.5;
  const rng = new Rng(11);
  const pool = rows(rng, 4096);
  const out: BenchResult[] = [];
  for (const n of [1, 100, 1000]) {
    const set = compilePolicySet(
      [{ file: "bench.yaml", version: 2, rules: rules(rng, n), macros: [], lists: [] }],
      new Map([["res", { kind: "sae" as const, dSae: D_SAE }]]),
    );
    const engine = new PolicyEngine(set);
    const latents = new Map([["res", pool]]);
    const pos = new Array(REQUESTS).fill(0);
    let frame = 0;
    const step = (): number => {
      const q = frame % REQUESTS;
      const b: TokenBatch = {
        ctx: { requestId: `q${q}`, model: "m", phase: "decode" },
        position: pos[q],
        tokens: FRAME,
        latents,
        firstRow: (frame * FRAME) % (pool.length - FRAME),
      };
      pos[q] += FRAME;
      frame++;
      return engine.evaluate(b).length;
    };
    // warm-up: the row times V8's optimized code (200 frames were too few: the 100-rule row then
    // moved by 40% with a change that left its steady state alone). A count, not a time, so every
    // tree measures the same frames from the same state (suppression, positions)
    for (let i = 0; i < WARMUP_FRAMES; i++) step();
    const lat: number[] = [];
    let firings = 0;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end || lat.length < 50) {
      const t0 = performance.now();
      firings += step();
      lat.push(performance.now() - t0);
    }
    const total = lat.reduce((a, v) => a + v, 0);
    lat.sort((a, b) => a - b);
    out.push({
      name: `policy/rules-${n}`,
      tokens_per_s: Math.round((lat.length * FRAME) / (total / 1000)),
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: Number(percentile(lat, 50).toFixed(4)),
      p99_ms: Number(percentile(lat, 99).toFixed(4)),
      rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
    });
    console.error(
      `bench: policy/rules-${n}: ${lat.length} frames of ${FRAME} tokens, ${firings} firings`,
    );
    await new Promise((r) => setTimeout(r, 0));
  }
  return out;
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  console.log(JSON.stringify(await benchPolicy({ quick }), null, 2));
}
