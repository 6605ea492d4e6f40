/**
 * The workbench's responsiveness on a trace of 1,000 requests × 64 tokens
 * of the demo's simulated model (d_model 256, a 1024-latent demo SAE, the
 * demo policies): time to load and encode the trace (`explore` start-up),
 * to answer the first request's heatmap (`GET /ui/api/requests/:id`), and
 * from a rule edit to its preview (`POST /ui/api/policy/preview`).
 *
 * `deno run -A bench/workbench.ts [requests] [tokens]` prints one JSON object.
 * Not a timed test: the figures go to the closing note and docs.
 *
 * @module
 */
import { writeSimulatedTrace } from "../src/demo/simulated_trace.ts";
import {
  buildDemoSae,
  DEMO_SIMULATOR,
  SimulatedModel,
  writeDemoLabels,
} from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { workbenchApi } from "../src/workbench/api.ts";
import { loadTraceSource } from "../src/workbench/load.ts";

const requests = Number(Deno.args[0] ?? 1000);
const tokens = Number(Deno.args[1] ?? 64);
const WORDS = [
  "the",
  "weather",
  "is",
  "nice",
  "please",
  "summarize",
  "this",
  "report",
  "for",
  "me",
];
const dir = await Deno.makeTempDir({ prefix: "lw-bench-workbench-" });
try {
  const sim = new SimulatedModel(DEMO_SIMULATOR);
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, 1024));
  await writeDemoLabels(`${dir}/sae`);
  const policy = new URL("../policies/demo.yaml", import.meta.url).pathname;
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: bench\nmodel: sim-gpt\nhook: blocks.6.hook_resid_post\n` +
      `saes:\n  - id: demo-res\n    path: ./sae\npolicies:\n  - ${policy}\n`,
  );
  const reqs = Array.from({ length: requests }, (_, i) => {
    const words = Array.from({ length: tokens }, (_, j) => WORDS[(i * 7 + j * 3) % WORDS.length]);
    if (i % 10 === 0) words.splice(5, 3, "ignore", "previous", "instructions");
    return {
      id: `r${i}`,
      prompt: words.slice(0, tokens / 2).join(" "),
      reply: words.slice(tokens / 2).join(" "),
    };
  });
  // in files of 250 requests: one writer's queue (64 MiB) holds a file's frames
  const traces: string[] = [];
  for (let i = 0; i < reqs.length; i += 250) {
    traces.push(`${dir}/bench-${i}.trace.gz`);
    await writeSimulatedTrace(traces[traces.length - 1], sim, reqs.slice(i, i + 250), {
      dtype: "bf16",
      startTime: Date.UTC(2025, 0, 1) + i * 1000,
    });
  }

  const t0 = performance.now();
  const source = await loadTraceSource(`${dir}/monitor.yaml`, traces);
  const loaded = performance.now();
  const app = workbenchApi(source);
  const res = await app.request("/ui/api/requests/r0");
  await res.json();
  const firstHeatmap = performance.now();
  const text = (await Deno.readTextFile(policy)).replace("above: 2.0 }", "above: 2.5 }");
  const p0 = performance.now();
  const prev = await app.request("/ui/api/policy/preview", {
    method: "POST",
    body: JSON.stringify({ text, file: policy, curve: { rule: "prompt-injection" } }),
  });
  const body = await prev.json();
  const p1 = performance.now();
  console.log(JSON.stringify({
    requests: source.store.requests.size,
    tokensPerRequest: tokens,
    loadMs: Math.round(loaded - t0),
    openToFirstHeatmapMs: Math.round(firstHeatmap - t0),
    requestDetailMs: Math.round(firstHeatmap - loaded),
    editToPreviewMs: Math.round(p1 - p0),
    previewFired: body.requests.filter((r: { fired: boolean }) => r.fired).length,
  }));
  await source.store.monitor.close();
} finally {
  await Deno.remove(dir, { recursive: true });
}
