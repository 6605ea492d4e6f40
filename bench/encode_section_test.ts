import assert from "node:assert/strict";
import { SHAPES } from "./bench_sae.ts";
import { encodePlan, finishRow } from "./encode_section.ts";

Deno.test("encodePlan: --quick runs a subset of the full run's rows, f32 before bf16", () => {
  const rows = (quick: boolean) =>
    SHAPES.flatMap((s) =>
      encodePlan(s, { quick }).flatMap((r) => r.batches.map((b) => `${s.label}-${r.dtype}/b${b}`))
    );
  const full = rows(false), quick = rows(true);
  assert.equal(full.length, SHAPES.length * 2 * 3);
  for (const r of quick) assert.ok(full.includes(r), `${r} is not a full-run row`);
  // the 1 GiB shape is full-run only; the 768→24576 JumpReLU is in both, with both weight types
  assert.ok(!quick.some((r) => r.startsWith("topk-4096x65536")));
  assert.ok(quick.includes("jumprelu-768x24576-bf16/b1"));
  for (const s of SHAPES) {
    const dtypes = encodePlan(s, { quick: false }).map((r) => r.dtype);
    assert.deepEqual(dtypes, ["f32", "bf16"]); // bf16 rounds the f32 weights in place
  }
});

Deno.test("finishRow: GFLOP/s, ratio and share of the peak from the shape's FLOP per token", () => {
  const row = (name: string, base: number | null) => ({
    name,
    tokens_per_s: 1000,
    baseline_tokens_per_s: base,
    ratio: null,
    p50_ms: 1,
    p99_ms: 2,
    rss_mb: 0,
  });
  const l0 = new Map([["jumprelu-2304x16384-f32", 55]]);
  // 2 × 2304 × 16384 = 75,497,472 FLOP a token: 75.497 GFLOP/s at 1,000 tokens/s
  const b128 = finishRow(row("encode/jumprelu-2304x16384-f32/b128", 250), l0, 150.994944);
  assert.ok(Math.abs(b128.gflops! - 75.497472) < 1e-9);
  assert.ok(Math.abs(b128.baseline_gflops! - 18.874368) < 1e-9);
  assert.equal(b128.ratio, 4);
  assert.ok(Math.abs(b128.pct_of_peak! - 0.5) < 1e-12);
  assert.equal(b128.l0, 55);
  const b1 = finishRow(row("encode/jumprelu-2304x16384-f32/b1", null), l0, 150);
  assert.equal(b1.ratio, null);
  assert.equal(b1.baseline_gflops, null);
  assert.equal(b1.pct_of_peak, undefined); // batch 128 only
  // the 768-wide TopK's name carries its k: the shape is still found
  const topk = finishRow(row("encode/topk-768x24576-k32-bf16/b16", 500), new Map(), 0);
  assert.ok(Math.abs(topk.gflops! - 2 * 768 * 24576 * 1000 / 1e9) < 1e-9);
});
