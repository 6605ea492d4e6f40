/**
 * onnxruntime's int8 first pass writing into a given region: the same
 * accumulations as the graph returns on its own, and `scanned` only when the
 * region really holds them.
 */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { randomSae } from "../formats/random_sae.ts";
import { ACC_OUTPUT, buildCandidateGraph, TOKEN_OUTPUT } from "./candidate_graph.ts";
import { ortFirstPass } from "./candidate_ort_pass.ts";
import { encoderFeeds, openProviderSession } from "./session.ts";

Deno.test("ort first pass: the region gets the accumulations the graph computes alone", async () => {
  const dIn = 40, dSae = 300;
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed: 17 });
  const graph = buildCandidateGraph(sae);
  const { session } = await openProviderSession(graph.model, {
    provider: "cpu",
    intraOpThreads: 1,
  });
  const rng = new Rng(5);
  try {
    const tokens = 3;
    const region = { acc: new Int32Array(tokens * dSae) };
    // two batches through one region: the second must not be mistaken for the first
    for (const batch of [0, 1]) {
      const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1 + batch);
      const feeds = encoderFeeds(x, tokens, dIn)!;
      const alone = await ortFirstPass({ session, feeds, tokens, dSae, region: null });
      assert.equal(alone.scanned, false, "no region, nothing scanned in place");
      const want = alone.out[ACC_OUTPUT].data as Int32Array;
      assert.equal(want.length, tokens * dSae);
      assert.ok(want.some((v) => v !== 0), "the product is not all zeros");

      const into = await ortFirstPass({ session, feeds, tokens, dSae, region });
      assert.equal(into.scanned, true, `batch ${batch}: the accumulations are in the region`);
      assert.deepEqual(region.acc, want, `batch ${batch}: the region holds the graph's product`);
      assert.deepEqual(into.out[TOKEN_OUTPUT].dims, [tokens, 5]);
    }
  } finally {
    await session.release();
  }
});

Deno.test("ort first pass: TopK's scores come back with no region, never as scanned", async () => {
  const dIn = 24, dSae = 96;
  const sae = randomSae({ architecture: "topk", k: 4, dIn, dSae, seed: 3 });
  const graph = buildCandidateGraph(sae);
  const { session } = await openProviderSession(graph.model, {
    provider: "cpu",
    intraOpThreads: 1,
  });
  try {
    const x = new Rng(9).fillGaussian(new Float32Array(2 * dIn), 1);
    const { out, scanned } = await ortFirstPass({
      session,
      feeds: encoderFeeds(x, 2, dIn)!,
      tokens: 2,
      dSae,
      region: null,
    });
    assert.equal(scanned, false);
    assert.equal(out[ACC_OUTPUT], undefined, "TopK's graph outputs scores, not accumulations");
  } finally {
    await session.release();
  }
});
