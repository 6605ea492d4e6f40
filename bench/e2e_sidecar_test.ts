/** What the end-to-end bench records of the sidecar, and the latency split of its rows. */
import assert from "node:assert/strict";
import { latencySplit, rssMb, SidecarSamples } from "./e2e_sidecar.ts";
import { Samples } from "./samples.ts";

Deno.test("SidecarSamples: measuring from the start, nothing encoded, room for a two-minute row", () => {
  const s = new SidecarSamples();
  assert.equal(s.measuring, true);
  assert.equal(s.encoded, 0);
  assert.equal(s.splitMissing, 0);
  // two minutes at half of 150,000 tokens/s in frames of 16, without growing
  for (const l of [s.latencies, s.toSidecar, s.inSidecar]) assert.ok(l.capacity >= 562_500);
  assert.ok(rssMb() > 0);
});

Deno.test("latencySplit: p50 and p99 of each half, null where a half has no frame", () => {
  const to = new Samples(4), into = new Samples(4);
  for (const v of [4, 1, 3, 2]) to.push(v);
  assert.deepEqual(latencySplit(to, into), {
    to_sidecar_p50_ms: 3,
    to_sidecar_p99_ms: 4,
    in_sidecar_p50_ms: null,
    in_sidecar_p99_ms: null,
  });
});
