import assert from "node:assert/strict";
import {
  absorptionPolicy,
  absorptionRequests,
  writeAbsorptionMonitor,
  writeAbsorptionTrace,
} from "../demo/absorption_fixture.ts";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { type FamilyReport, formatFamilyReport, saeFamily } from "./sae_family.ts";

async function fixture(): Promise<{ dir: string; reqs: ReturnType<typeof absorptionRequests> }> {
  const dir = await Deno.makeTempDir();
  await writeAbsorptionMonitor(dir, absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 }));
  const reqs = absorptionRequests({ positives: 40, benign: 20, seed: 21 });
  await writeAbsorptionTrace(`${dir}/t.trace`, reqs);
  return { dir, reqs };
}

/** `latentwatch sae family ...` in a child process, as a user runs it. */
const cli = (...args: string[]) => runLatentwatch(["sae", "family", ...args]);

Deno.test("sae family: the child by decoder cosine (1/√2), and as the absorption candidate of every silent token", async () => {
  const { dir, reqs } = await fixture();
  const r = await saeFamily(`${dir}/sae`, {}, {
    latent: 0,
    traces: [`${dir}/t.trace`],
    // concept tokens project 2..4 (plus noise σ 0.15); nothing else comes near 1.5
    projectionAbove: 1.5,
    provider: "cpu",
  });
  // cosines by hand: child (1/√2, 1/√2)·(1, 0) = 0.7071; distractor 0.4
  assert.deepStrictEqual(
    r.members.map((m) => [m.index, m.label, Math.round(m.cosine * 1e4) / 1e4]),
    [[0, "starts with E", 1], [1, "elephant", 0.7071], [2, "grey things", 0.4]],
  );
  const concept = reqs.flatMap((x) => x.concept);
  const absorbed = concept.filter((c) => c.absorbed).length;
  assert.equal(r.absorption!.high, concept.length);
  assert.equal(r.absorption!.silent, absorbed);
  assert.equal(r.absorption!.candidates[0].index, 1);
  assert.equal(r.absorption!.candidates[0].share, 1);
  assert.equal(r.absorption!.candidates[0].tokens, absorbed);
  // unrelated latents (cosine 0) are never candidates
  assert.ok(r.absorption!.candidates.every((c) => c.cosine > 0));
  const text = formatFamilyReport(r);
  assert.match(text, /0\.707 {2}1 "elephant"/);
  assert.match(text, /100\.0% of silent tokens \(\d+\) {2}cosine 0\.707 {2}1 "elephant"/);
});

Deno.test("sae family: --probe concept, --min-cosine and --top, text and --json from the command line", async () => {
  const { dir } = await fixture();
  const json = await cli(
    `${dir}/sae`,
    "--probe",
    `${dir}/probe.json`,
    "--min-cosine",
    "0.5",
    "--json",
  );
  assert.equal(json.code, 0, json.stderr);
  const r: FamilyReport = JSON.parse(json.stdout);
  assert.deepStrictEqual(r.concept, { probe: `${dir}/probe.json`, score: 0 });
  assert.deepStrictEqual(r.members.map((m) => m.index), [0, 1]);
  const text = await cli(`${dir}/sae`, "0", "--top", "1");
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    /decoder cosine ≥ 0\.3: 3 latents \(top 1 shown\)\n {2}1\.000 {2}0 "starts with E"\n$/,
  );
});

Deno.test("sae family: bad input is refused with what was expected and found", async () => {
  const { dir } = await fixture();
  const range = await cli(`${dir}/sae`, "8");
  assert.equal(range.code, 1);
  assert.match(range.stderr, /<latent> 8: expected an index below d_sae = 8/);
  const cos = await cli(`${dir}/sae`, "0", "--min-cosine", "2");
  assert.equal(cos.code, 1);
  assert.match(cos.stderr, /--min-cosine: expected a cosine in \(-1, 1\], found '2'/);
  const score = await cli(`${dir}/sae`, "--probe", `${dir}/probe.json:3`);
  assert.equal(score.code, 1);
  assert.match(score.stderr, /expected a score below 1 .*found 3/);
  const none = await cli(`${dir}/sae`);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing <latent>/);
  await Deno.writeTextFile(`${dir}/bad.trace`, "not a trace\n");
  const trace = await cli(`${dir}/sae`, "0", "--traces", `${dir}/bad.trace`);
  assert.equal(trace.code, 1);
  assert.match(trace.stderr, /bad\.trace/);
});
