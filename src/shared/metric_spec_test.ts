import assert from "node:assert/strict";
import { HISTOGRAM_SPEC, METRIC_SPEC, promName } from "./metric_spec.ts";

Deno.test("metric spec: Prometheus names, written out by hand", () => {
  assert.equal(promName("latentwatch.frames.lost"), "latentwatch_frames_lost_total");
  assert.equal(promName("latentwatch.queue.depth"), "latentwatch_queue_depth");
  assert.equal(promName("latentwatch.build_info"), "latentwatch_build_info");
  assert.equal(promName("latentwatch.gate.latency"), "latentwatch_gate_latency_seconds");
  assert.equal(
    promName("latentwatch.alert.ack_latency"),
    "latentwatch_alert_ack_latency_seconds",
  );
});

Deno.test("metric spec: docs/operations.md names every metric with its kind and labels", async () => {
  const doc = await Deno.readTextFile(new URL("../../docs/operations.md", import.meta.url));
  const rows = new Map<string, string[]>();
  for (const line of doc.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const name = /^`(latentwatch_\w+)`$/.exec(cells[1] ?? "")?.[1];
    if (name) rows.set(name, cells.slice(2));
  }
  const labelsOf = (cell: string) =>
    cell === "—" ? [] : cell.split(", ").map((l) => l.replace(/`/g, ""));
  for (const [name, spec] of Object.entries(METRIC_SPEC)) {
    const row = rows.get(promName(name as keyof typeof METRIC_SPEC));
    assert.ok(row, `docs/operations.md has a row for ${name}`);
    assert.equal(row[0], spec.kind, `${name}: kind`);
    assert.deepEqual(labelsOf(row[1]), [...spec.labels], `${name}: labels`);
  }
  for (const [name, spec] of Object.entries(HISTOGRAM_SPEC)) {
    const row = rows.get(promName(name as keyof typeof HISTOGRAM_SPEC));
    assert.ok(row, `docs/operations.md has a row for ${name}`);
    assert.deepEqual(labelsOf(row[0]), [...spec.labels], `${name}: labels`);
  }
});
