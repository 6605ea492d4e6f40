import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import { loadMonitorConfig } from "../config/monitor.ts";
import { loadOfflineMonitor } from "../traces/offline.ts";
import { type ReplayFiring, replayTrace } from "../traces/replay.ts";
import {
  ABSORPTION,
  absorptionPolicy,
  absorptionRequests,
  absorptionSae,
  writeAbsorptionMonitor,
  writeAbsorptionTrace,
} from "./absorption_fixture.ts";

Deno.test("fixture SAE: the child's decoder is normalize(p + e1), the parent's encoder silent on it", () => {
  const sae = absorptionSae();
  const { dIn, dSae } = ABSORPTION;
  // hand values: child decoder (1/√2, 1/√2, 0…), parent encoder column (1, −2, 0…)
  assert.deepStrictEqual(
    [...sae.wDec.subarray(dIn, dIn + 3)],
    [Math.fround(Math.SQRT1_2), Math.fround(Math.SQRT1_2), 0],
  );
  assert.deepStrictEqual([sae.wEnc[0], sae.wEnc[dSae], sae.wEnc[2 * dSae]], [1, -2, 0]);
});

Deno.test("fixture requests: positives hold 1-3 concept tokens, some absorbed; benign hold none", () => {
  const reqs = absorptionRequests({ positives: 200, benign: 50, seed: 5 });
  const concept = reqs.slice(0, 200).flatMap((r) => r.concept);
  assert.ok(reqs.slice(0, 200).every((r) => r.concept.length >= 1 && r.concept.length <= 3));
  assert.ok(reqs.slice(200).every((r) => r.concept.length === 0));
  const share = concept.filter((c) => c.absorbed).length / concept.length;
  assert.ok(share > 0.4 && share < 0.6, `absorbed share ${share}`);
});

Deno.test("replay (onnxruntime): the parent latent alone misses absorbed tokens, its family finds them all", async () => {
  const dir = await Deno.makeTempDir();
  // the probe (score = activation · p) detects, the family explains: both in one 'all'
  const policy = absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 }) + `
  - id: probe-and-family
    title: Probe detects, family explains
    severity: high
    when:
      all:
        - {probe: concept, above: 1.5}
        - {sae: res, family: {of: 0, members: [0, 1]}, above: 1}
    actions: [alert]
`;
  const monitor = await writeAbsorptionMonitor(dir, policy);
  const reqs = absorptionRequests({ positives: 60, benign: 20, seed: 11 });
  await writeAbsorptionTrace(`${dir}/t.trace`, reqs);
  const m = await loadOfflineMonitor(await loadMonitorConfig(monitor));
  // every member is watched, so the (watched-latent) encoder produces the child
  assert.deepStrictEqual([...m.set.watchedLatents("res")], [0, 1]);
  const firings: ReplayFiring[] = [];
  const alerts: Alert[] = [];
  await replayTrace(m, `${dir}/t.trace`, {
    onFiring: (f) => firings.push(f),
    onAlert: (a) => alerts.push(a),
  });
  await m.close();
  const held = (rule: string, id: string) =>
    new Set(firings.find((f) => f.rule.id === rule && f.requestId === id)?.positions ?? []);

  let absorbed = 0;
  let missedRequests = 0;
  for (const r of reqs.slice(0, 60)) {
    const single = held("parent-only", r.id);
    const family = held("parent-family", r.id);
    for (const c of r.concept) {
      assert.ok(family.has(c.position), `${r.id}@${c.position}: family missed it`);
      assert.ok(held("probe-and-family", r.id).has(c.position), `${r.id}@${c.position}`);
      // the parent's encoder reads a − 2b < 0 where the child's direction is there too
      assert.equal(single.has(c.position), !c.absorbed, `${r.id}@${c.position}`);
      if (c.absorbed) absorbed++;
    }
    if (r.concept.every((c) => c.absorbed)) {
      missedRequests++;
      assert.ok(r.concept.every((c) => !single.has(c.position)));
    }
  }
  assert.ok(absorbed >= 20, `absorbed tokens ${absorbed}`);
  assert.ok(missedRequests >= 10, `requests with only absorbed tokens ${missedRequests}`);

  const startsAbsorbed = (a: Alert) =>
    reqs.find((x) => x.id === a.requestId)!.concept
      .find((c) => c.position === a.tokens.start)?.absorbed === true;
  // the alert of the combined rule on an absorbed token: the probe's score, the parent
  // silent, the child with its activation and its weight 1/√2
  const onAbsorbed = alerts.find((a) => a.policy.id === "probe-and-family" && startsAbsorbed(a));
  assert.ok(onAbsorbed, "an alert starting on an absorbed token");
  assert.equal(onAbsorbed.probes?.[0].probe, "concept");
  assert.ok(onAbsorbed.probes![0].value > 1.5);
  const parent = onAbsorbed.latents?.find((l) => l.index === 0);
  const child = onAbsorbed.latents?.find((l) => l.index === 1);
  assert.equal(parent?.value, 0);
  assert.equal(parent?.label, "starts with E");
  assert.ok(child && child.value > 1, `child ${JSON.stringify(child)}`);
  assert.equal(child.label, "elephant");
  assert.ok(Math.abs(child.family!.cosine - Math.SQRT1_2) < 1e-6);
  assert.equal(child.family!.of, 0);
  // the combined rule's witness is the probe (its first trigger): its score is the evidence
  assert.equal(onAbsorbed.evidence[0].value, onAbsorbed.probes![0].value);
  // the family rule's evidence is the family's value: the child's activation × 1/√2
  const familyAlert = alerts.find((a) => a.policy.id === "parent-family" && startsAbsorbed(a));
  assert.ok(familyAlert, "a family alert starting on an absorbed token");
  const childThere = familyAlert.latents!.find((l) => l.index === 1)!;
  assert.ok(Math.abs(familyAlert.evidence[0].value - childThere.value * Math.SQRT1_2) < 1e-5);
  assert.equal(familyAlert.latent.max, familyAlert.evidence[0].value);
});
