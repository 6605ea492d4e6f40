/** The bench's Markdown table: one line per row, e2e rows with their latency split. */
import assert from "node:assert/strict";
import { resultsTable } from "./table.ts";

Deno.test("table: an e2e row shows each half of its p99 (and its floor's); an encode row shows its path and fallbacks", () => {
  const lines = resultsTable([
    {
      name: "e2e/x/load-50pct",
      tokens_per_s: 45000,
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: 0.25,
      p99_ms: 16.456,
      rss_mb: 620,
      to_sidecar_p99_ms: 12.61,
      in_sidecar_p99_ms: 4.4,
    },
    {
      name: "e2e/x/load-25pct",
      tokens_per_s: 20000,
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: 0.2,
      p99_ms: 1.5,
      rss_mb: 610,
      to_sidecar_p99_ms: 1.1,
      in_sidecar_p99_ms: 0.35,
      floor_p99_ms: 1.234,
      p99_over_floor_ms: 0.266,
    },
    {
      name: "encode/y/b1",
      tokens_per_s: 1000,
      baseline_tokens_per_s: 500,
      ratio: 2,
      p50_ms: 1,
      p99_ms: 2,
      rss_mb: 300,
      path: "f32",
      fallbacks: 3,
    },
  ]).split("\n");
  assert.equal(lines.length, 5);
  assert.equal(
    lines[2],
    "| e2e/x/load-50pct | 45000 | — | — | — | — | — | 0.25 | 16.46 (to the sidecar 12.61, in it 4.40) | 620 |",
  );
  assert.equal(
    lines[3],
    "| e2e/x/load-25pct | 20000 | — | — | — | — | — | 0.20 | 1.50 (to the sidecar 1.10, in it 0.35; floor 1.23) | 610 |",
  );
  assert.equal(
    lines[4],
    "| encode/y/b1 | 1000 | 500 | 2.00× | — | — | f32 (3) | 1.00 | 2.00 | 300 |",
  );
});

Deno.test("table: a paired row shows what the sidecar added to each frame beside its split", () => {
  const [, , line] = resultsTable([
    {
      name: "e2e/x/paired-25pct",
      tokens_per_s: 27000,
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: 0.35,
      p99_ms: 1.876,
      rss_mb: 600,
      to_sidecar_p99_ms: 1.4,
      in_sidecar_p99_ms: 0.31,
      frame_added_p50_ms: 0.17,
      frame_added_p99_ms: 0.944,
      bare_p99_ms: 1.12,
    },
  ]).split("\n");
  assert.equal(
    line,
    "| e2e/x/paired-25pct | 27000 | — | — | — | — | — | 0.35 | 1.88 (to the sidecar 1.40, in it 0.31; added per frame over a bare subscriber of the same frames 0.94) | 600 |",
  );
});
