/**
 * Held-back check of `policy calibrate`: the demo's simulated model writes
 * benign requests (64 tokens each, random everyday words, no planted
 * concept) into a calibration trace and a held-back trace of equal size;
 * thresholds suggested per request on the first half for several targets
 * are applied to the second, whose requests are passed as `positives` (the
 * share of them that fires is then the held-back false-positive rate).
 * Prints a Markdown table for docs/policies.md.
 *
 *   deno run -A tools/calibrate_holdout.ts [requests per half, default 2000] [noise, default 1]
 *
 * @module
 */
import { Rng } from "../src/core/random.ts";
import {
  buildDemoSae,
  DEMO_SIMULATOR,
  SimulatedModel,
  writeDemoLabels,
} from "../src/demo/simulator.ts";
import { type SimulatedRequest, writeSimulatedTrace } from "../src/demo/simulated_trace.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { loadMonitorAt } from "../src/cli/common.ts";
import { calibrate } from "../src/cli/policy_calibrate_run.ts";

const WORDS = ("the weather report says rain later today please summarise this article about " +
  "ocean currents and their effect on climate models write a short poem for my friend who " +
  "likes tea").split(" ");

const half = Number(Deno.args[0] ?? 2000);
// the demo's noise (0.05) never wakes a concept latent on benign words; more noise gives the benign
// pooled values a spread to calibrate on
const noise = Number(Deno.args[1] ?? 1);
const dir = await Deno.makeTempDir({ prefix: "lw-calib-" });
const sim = new SimulatedModel({ ...DEMO_SIMULATOR, noise });
await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, 512));
await writeDemoLabels(`${dir}/sae`);
const policies = new URL("../policies/demo.yaml", import.meta.url).pathname;
await Deno.writeTextFile(
  `${dir}/monitor.yaml`,
  `monitor: demo\nmodel: sim-gpt\nhook: blocks.6.hook_resid_post\n` +
    `saes:\n  - id: demo-res\n    path: ./sae\npolicies:\n  - ${policies}\n`,
);
const rng = new Rng(17);
const words = (n: number) =>
  Array.from({ length: n }, () => WORDS[Math.floor(rng.uniform() * WORDS.length)]).join(" ");
const requests = (tag: string): SimulatedRequest[] =>
  Array.from(
    { length: half },
    (_, i) => ({ id: `${tag}-${i}`, prompt: words(32), reply: words(32) }),
  );
await writeSimulatedTrace(`${dir}/cal.trace.gz`, sim, requests("cal"));
await writeSimulatedTrace(`${dir}/held.trace.gz`, sim, requests("held"));

const monitor = await loadMonitorAt(`${dir}/monitor.yaml`, { evidence: false });
console.log(
  `${half} benign requests to calibrate on, ${half} held back (64 tokens each, noise ${noise})\n`,
);
console.log("| rule | target | suggested threshold | calibration rate | held-back rate |");
console.log("|---|---|---|---|---|");
for (const target of [0.1, 0.05, 0.01]) {
  const r = await calibrate(monitor, [`${dir}/cal.trace.gz`], target, ["request"], undefined, {
    positives: [`${dir}/held.trace.gz`],
  });
  for (const c of r.rules) {
    const s = c.suggested?.request;
    if (!s) continue;
    console.log(
      `| ${c.rule} | ${target} | ${+s.threshold.toPrecision(4)}${
        s.anyThresholdMeets ? " (every threshold meets)" : ""
      } | ${(s.perThousandRequests / 1000).toFixed(4)} | ${(s.detectionRate ?? 0).toFixed(4)} |`,
    );
  }
}
await monitor.close();
await Deno.remove(dir, { recursive: true });
