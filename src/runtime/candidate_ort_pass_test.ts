/**
 * onnxruntime's int8 first pass writing into a given region: the same
 * accumulations as the graph returns on its own, and `scanned` when the
 * region holds them. (That onnxruntime may decline the region cannot be
 * provoked here; the encoder's tests cover the scan's results end to end.)
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
    // two batches through one region: the second's product replaces the first's
    for (const batch of [0, 1]) {
      const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1 + batch);
      const feeds = encoderFeeds(x, tokens, dIn)!;
      // the graph run on its own, outside the code under test
      const want = (await session.run(feeds))[ACC_OUTPUT].data as Int32Array;
      const alone = await ortFirstPass({ session, feeds, tokens, dSae, region: null });
      assert.equal(alone.scanned, false, "no region, nothing scanned in place");
      assert.deepEqual(alone.out[ACC_OUTPUT].data, want);
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
