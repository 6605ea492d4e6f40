import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { topKPositions, topKRows } from "./top_k.ts";

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

Deno.test("topKRows: k best per token by latent, zeros and negatives dropped, watch filter", () => {
  // token 0: slots 0..4, token 1: slots 4..6
  const scores = Float32Array.of(2, 5, -1, 5, 0, 3);
  const latents = Uint32Array.of(10, 3, 7, 1, 8, 2);
  const base = Uint32Array.of(0, 4), cursor = Uint32Array.of(4, 6);
  const rows = topKRows({ scores, latents, base, cursor, k: 3 });
  // token 0: best three are 5 (latent 1), 5 (latent 3), 2 (latent 10); by latent: 1, 3, 10
  assert.deepEqual([...rows[0].indices], [1, 3, 10]);
  assert.deepEqual([...rows[0].values], [5, 5, 2]);
  // token 1: 3 (latent 2) and 0 (latent 8, dropped by the relu)
  assert.deepEqual([...rows[1].indices], [2]);
  const watch = new Uint8Array(11);
  watch[10] = 1;
  assert.deepEqual([...topKRows({ scores, latents, base, cursor, k: 3, watch })[0].indices], [10]);
});
