import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { topKPositions } from "./top_k.ts";

/** The k best by sorting everything: larger score first, ties by lower latent. */
function bySort(scores: Float32Array, latents: Uint32Array, from: number, to: number, k: number) {
  const all = Array.from({ length: to - from }, (_, i) => from + i);
  all.sort((a, b) => scores[b] - scores[a] || latents[a] - latents[b]);
  return all.slice(0, k).sort((a, b) => a - b);
}

Deno.test("topKPositions: the same k as a full sort, ties by the lower latent, ranges and k ≥ n", () => {
  const rng = new Rng(5);
  for (const n of [0, 1, 7, 64, 500]) {
    for (const k of [0, 1, 5, 32, 600]) {
      // few distinct scores: many ties
      const scores = Float32Array.from({ length: n + 3 }, () => Math.floor(rng.uniform() * 9));
      const latents = Uint32Array.from({ length: n + 3 }, (_, i) => (i * 7919) % 10007);
      const out = new Uint32Array(Math.max(k, 1));
      const got = topKPositions(scores, latents, 3, n + 3, k, out);
      assert.equal(got, Math.min(k, n));
      assert.deepEqual(
        [...out.subarray(0, got)].sort((a, b) => a - b),
        bySort(scores, latents, 3, n + 3, k),
      );
    }
  }
});
