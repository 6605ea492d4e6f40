import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import type { SaeWeights } from "../core/sae.ts";
import { randomSae } from "../formats/random_sae.ts";
import { APPROX_OUTPUT, buildCandidateGraph, TOKEN_OUTPUT, topkCutOf } from "./candidate_graph.ts";
import { nativeProduct } from "./candidate_native.ts";
import { NativeKernelsUnavailableError } from "./native_kernels.ts";
import { missingCpuFlags } from "./native_library.ts";
import { encoderFeeds, openProviderSession } from "./session.ts";

const wide = { dIn: 70000, dSae: 8, architecture: "jumprelu" } as SaeWeights;
const small = { dIn: 8, dSae: 8, architecture: "jumprelu" } as SaeWeights;

Deno.test("nativeProduct: off says so; a d_in past int32's reach falls back under auto, fails under require", async () => {
  assert.deepEqual(await nativeProduct(small, "off"), {
    open: null,
    why: "execution.native_kernels is off",
  });
  const auto = await nativeProduct(wide, "auto");
  assert.equal(auto.open, null);
  assert.match(auto.why!, /d_in ≤ 65536 \(int32 sums\), found 70000/);
  await assert.rejects(
    () => nativeProduct(wide, "require"),
    (e) => e instanceof NativeKernelsUnavailableError && /found 70000/.test(e.message),
  );
});

Deno.test({
  name: "nativeProduct: where the kernels load, auto and require open the product, scan and dots",
  ignore: missingCpuFlags().length > 0,
  async fn() {
    for (const setting of ["auto", "require"] as const) {
      const { open, why } = await nativeProduct(small, setting);
      assert.equal(why, undefined);
      const kernels = await open!(new Int8Array(64).fill(1));
      const acc = new Int32Array(8);
      await kernels.gemm.run(new Uint8Array(8).fill(130), 1, acc); // (130 − 128) · 1 · 8
      assert.deepEqual([...acc], new Array(8).fill(16));
      assert.equal(typeof kernels.select.run, "function");
      assert.equal(typeof kernels.dots.run, "function");
    }
  },
});

Deno.test("topkCutOf gives the cut onnxruntime computes in the TopK candidate graph, bit for bit", async () => {
  const sae = randomSae({ architecture: "topk", dIn: 40, dSae: 300, k: 17, seed: 61 });
  const graph = buildCandidateGraph(sae); // the product and the cut in the graph
  const { session } = await openProviderSession(graph.model, { provider: "cpu" });
  try {
    const tokens = 9;
    const x = new Rng(62).fillGaussian(new Float32Array(tokens * 40), 1.5);
    const out = await session.run(encoderFeeds(x, tokens, 40)!);
    const a = out[APPROX_OUTPUT].data as Float32Array;
    const tb = out[TOKEN_OUTPUT].data as Float32Array;
    for (let t = 0; t < tokens; t++) {
      const kth = [...a.subarray(t * 300, (t + 1) * 300)].sort((p, q) => q - p)[16];
      assert.equal(topkCutOf(kth, tb[5 * t + 3]), tb[5 * t + 4], `token ${t}`);
    }
  } finally {
    await session.release();
  }
});
