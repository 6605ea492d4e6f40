import assert from "node:assert/strict";
import { writeExample } from "../demo/example_trace.ts";
import { loadMonitorConfig } from "../config/monitor.ts";
import { encodeTrace, loadOfflineMonitor } from "../traces/offline.ts";
import { TraceReader } from "../traces/reader.ts";
import { LiveStore } from "./live_source.ts";
import { signalValues } from "./views.ts";
import { type LatentTable, rowOf } from "../core/latent_rows.ts";

/** `count` rows of `table` from `first`, each its own row. */
const rowsOf = (table: LatentTable, first: number, count: number) =>
  Array.from({ length: count }, (_, t) => rowOf(table, first + t)!);

Deno.test("LiveStore keeps the most recent requests and forgets the batches of the others", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-live-store-" });
  const policy = new URL("../../policies/demo.yaml", import.meta.url).pathname;
  const truth = await writeExample(dir, policy);
  const monitor = await loadOfflineMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`));
  try {
    const store = new LiveStore(monitor, { maxRequests: 2 });
    const changed: string[] = [];
    store.subscribe((id) => changed.push(id));
    // one frame per batch: what serve hands onEncoded, in the order it arrived
    const reader = await TraceReader.open(`${dir}/demo.trace.gz`);
    for await (const batch of encodeTrace(monitor, reader)) {
      let row = 0;
      for (const { frame } of batch.frames) {
        const latents = new Map(
          [...batch.latents].map(([id, rows]) => [id, rowsOf(rows, row, frame.tokens)]),
        );
        store.push([frame], latents);
        row += frame.tokens;
      }
    }
    const last = truth.slice(-2);
    assert.deepEqual([...store.requests.keys()], last.map((r) => r.id));
    assert.deepEqual(new Set(changed), new Set(truth.map((r) => r.id)));
    // the batches of forgotten requests are gone: only the kept requests' frames remain
    const kept = new Set(store.batches.flatMap((b) => b.frames.map((f) => f.requestId)));
    assert.deepEqual(kept, new Set(last.map((r) => r.id)));
    for (const r of last) {
      const stored = store.requests.get(r.id)!;
      assert.deepEqual(stored.tokens, r.tokens);
      // each concept latent is above 2 exactly where the simulator planted it
      assert.ok(r.concepts.size > 0, `${r.id} carries a concept`);
      for (const [latent, positions] of r.concepts) {
        const v = signalValues(store, stored, "demo-res", latent);
        assert.deepEqual(v.flatMap((x, i) => x > 2 ? [i] : []), positions, `latent ${latent}`);
      }
    }
  } finally {
    await monitor.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LiveStore keeps its own copy of each frame's activations (serve reuses a batch's memory)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-live-copy-" });
  const policy = new URL("../../policies/demo.yaml", import.meta.url).pathname;
  await writeExample(dir, policy);
  const monitor = await loadOfflineMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`));
  try {
    const store = new LiveStore(monitor, { maxRequests: 2 });
    const reader = await TraceReader.open(`${dir}/demo.trace.gz`);
    for await (const batch of encodeTrace(monitor, reader)) {
      const { frame } = batch.frames[0];
      const values = [...frame.data];
      store.push(
        [frame],
        new Map([...batch.latents].map(([id, rows]) => [id, rowsOf(rows, 0, frame.tokens)])),
      );
      frame.data.fill(NaN); // what a reused slab would hold
      const kept = store.batches.at(-1)!.frames[0];
      assert.deepEqual([...kept.data], values);
      break;
    }
  } finally {
    await monitor.close();
    await Deno.remove(dir, { recursive: true });
  }
});
