/**
 * Recall of a rule on a latent alone against a rule on its family, at the
 * same false-positive rate, on the planted absorption fixture
 * (`src/demo/absorption_fixture.ts`): the parent concept is absorbed into a
 * child latent on about half of its tokens. Both rules' thresholds are
 * calibrated per request on benign requests (`policy calibrate`'s
 * `calibrate`) for each target rate, then both rules run through the real
 * replay (onnxruntime encoder, policy engine) over held-back benign requests
 * (the measured false-positive rate) and positive requests (recall: the
 * share of them the rule fires on; also on the positives whose concept
 * tokens are all absorbed). Prints a Markdown table for docs/policies.md.
 *
 *   deno run -A tools/absorption_recall.ts [benign requests per half, default 2000] [positives, default 1000]
 *
 * @module
 */
import { loadMonitorAt } from "../src/cli/common.ts";
import { calibrate } from "../src/cli/policy_calibrate_run.ts";
import {
  absorptionPolicy,
  absorptionRequests,
  writeAbsorptionMonitor,
  writeAbsorptionTrace,
} from "../src/demo/absorption_fixture.ts";
import { replayTrace } from "../src/traces/replay.ts";

const half = Number(Deno.args[0] ?? 2000);
const nPos = Number(Deno.args[1] ?? 1000);
const MIN_COSINE = 0.5;
const dir = await Deno.makeTempDir({ prefix: "lw-absorption-" });
const monitorPath = await writeAbsorptionMonitor(
  dir,
  absorptionPolicy({ single: 0, family: 0, minCosine: MIN_COSINE }),
);
const cal = absorptionRequests({ positives: 0, benign: half, seed: 101, prefix: "cal" });
const held = absorptionRequests({ positives: 0, benign: half, seed: 202, prefix: "held" });
const pos = absorptionRequests({ positives: nPos, benign: 0, seed: 303, prefix: "pos" });
await writeAbsorptionTrace(`${dir}/cal.trace`, cal);
await writeAbsorptionTrace(`${dir}/held.trace`, held);
await writeAbsorptionTrace(`${dir}/pos.trace`, pos);
const allAbsorbed = new Set(pos.filter((r) => r.concept.every((c) => c.absorbed)).map((r) => r.id));

const calibrating = await loadMonitorAt(monitorPath, { evidence: false });
console.log(
  `${half} benign requests to calibrate on, ${half} held back, ${nPos} positives ` +
    `(${allAbsorbed.size} with every concept token absorbed); 24 tokens each; ` +
    `family: min_cosine ${MIN_COSINE}, combine sum, per-token pooling\n`,
);
console.log(
  "| target FPR | rule | threshold | held-back FPR | recall | recall, all tokens absorbed |",
);
console.log("|---|---|---|---|---|---|");
for (const target of [0.1, 0.05, 0.01, 0.001]) {
  const r = await calibrate(calibrating, [`${dir}/cal.trace`], target, ["request"]);
  const t = (id: string) => r.rules.find((c) => c.rule === id)?.suggested?.request?.threshold;
  const single = t("parent-only");
  const family = t("parent-family");
  if (single === undefined || family === undefined) {
    console.log(`| ${target} | (too few benign requests to calibrate) | | | | |`);
    continue;
  }
  // the calibrated thresholds, run by the engine over held-back benign and positive requests
  const runDir = await Deno.makeTempDir({ dir });
  const path = await writeAbsorptionMonitor(
    runDir,
    absorptionPolicy({ single, family, minCosine: MIN_COSINE }),
  );
  const monitor = await loadMonitorAt(path, { evidence: false });
  const fired = new Map<string, Set<string>>();
  for (const trace of ["held", "pos"]) {
    await replayTrace(monitor, `${dir}/${trace}.trace`, {
      onFiring: (f) => {
        let s = fired.get(f.rule.id);
        if (!s) fired.set(f.rule.id, s = new Set());
        s.add(f.requestId);
      },
    });
  }
  await monitor.close();
  for (const [id, threshold] of [["parent-only", single], ["parent-family", family]] as const) {
    const s = fired.get(id) ?? new Set();
    const fp = held.filter((x) => s.has(x.id)).length / held.length;
    const recall = pos.filter((x) => s.has(x.id)).length / pos.length;
    const absorbedRecall = [...allAbsorbed].filter((x) => s.has(x)).length / allAbsorbed.size;
    console.log(
      `| ${target} | ${id} | ${+threshold.toPrecision(4)} | ${fp.toFixed(4)} | ` +
        `${recall.toFixed(3)} | ${absorbedRecall.toFixed(3)} |`,
    );
  }
}
await calibrating.close();
await Deno.remove(dir, { recursive: true });
