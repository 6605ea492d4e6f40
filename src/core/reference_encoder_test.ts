import assert from "node:assert/strict";
import { referenceEncode, ReferenceEncoder, referencePreActivations } from "./reference_encoder.ts";
import type { SaeWeights, SparseLatents } from "./sae.ts";
import { tiny, tinyTies } from "./testdata/tiny_sae.ts";

const X = new Float32Array([2, 0]);

function pairs(l: SparseLatents): [number, number][] {
  return Array.from(l.indices, (i, n) => [i, l.values[n]]);
}

function enc1(sae: SaeWeights, x = X): [number, number][] {
  return pairs(referenceEncode(sae, x, 1)[0]);
}

Deno.test("pre-activations match the hand computation", () => {
  assert.deepEqual([...referencePreActivations(tiny(), X)], [3.5, 0.25, -1.5]);
});

Deno.test("standard: relu(h), zero and negative latents dropped", () => {
  assert.deepEqual(enc1(tiny()), [[0, 3.5], [1, 0.25]]);
  // Without b_dec subtraction: x̃ = [2, 0] → h = [2 + 0.5, −2 + 1.25, 1 − 1] = [2.5, −0.75, 0];
  // relu(0) = 0 is not a nonzero latent.
  assert.deepEqual(enc1(tiny({ applyBDecToInput: false })), [[0, 2.5]]);
});

Deno.test("jumprelu: strict h > threshold, then relu", () => {
  // threshold [3.5, 0.1, −2]: h0 = 3.5 is not > 3.5 (strict) → off; h1 = 0.25 > 0.1 → on;
  // h2 = −1.5 > −2 passes the gate but relu(−1.5) = 0 → off.
  const sae = tiny({ architecture: "jumprelu", threshold: new Float32Array([3.5, 0.1, -2]) });
  assert.deepEqual(enc1(sae), [[1, 0.25]]);
  // threshold [3.4, 0.3, 0]: h0 = 3.5 > 3.4 → on, h1 = 0.25 < 0.3 → off.
  const sae2 = tiny({ architecture: "jumprelu", threshold: new Float32Array([3.4, 0.3, 0]) });
  assert.deepEqual(enc1(sae2), [[0, 3.5]]);
});

Deno.test("topk: keep the k largest, then relu", () => {
  // h = [3.5, 0.25, −1.5]; k = 1 → {0}; k = 2 → {0, 1}; k = 3 adds h2 = −1.5, relu'd away.
  assert.deepEqual(enc1(tiny({ architecture: "topk", k: 1 })), [[0, 3.5]]);
  assert.deepEqual(enc1(tiny({ architecture: "topk", k: 2 })), [[0, 3.5], [1, 0.25]]);
  assert.deepEqual(enc1(tiny({ architecture: "topk", k: 3 })), [[0, 3.5], [1, 0.25]]);
  // x = [−1, 2]: x̃ = [−2, 3] → h = [−2 + 6 + 0.5, 2 + 0 + 1.25, −1 − 3 − 1] = [4.5, 3.25, −5].
  assert.deepEqual(enc1(tiny({ architecture: "topk", k: 1 }), new Float32Array([-1, 2])), [[
    0,
    4.5,
  ]]);
});

Deno.test("topk: rescale by decoder row norm before choosing", () => {
  // norms [5, 0.5, 1]: h' = [17.5, 0.125, −1.5]; k = 2 → [(0, 17.5), (1, 0.125)]
  const sae = tiny({ architecture: "topk", k: 2, rescaleActsByDecoderNorm: true });
  assert.deepEqual(enc1(sae), [[0, 17.5], [1, 0.125]]);
  // W_dec rows [0.1, 0], [0, 10], [1, 0] → norms [0.1, 10, 1]: h' = [0.35, 2.5, −1.5];
  // the rescale flips the winner of k = 1 from latent 0 to latent 1.
  const flip = tiny({
    architecture: "topk",
    k: 1,
    rescaleActsByDecoderNorm: true,
    wDec: new Float32Array([0.1, 0, 0, 10, 1, 0]),
  });
  assert.deepEqual(enc1(flip), [[1, 2.5]]);
});

Deno.test("topk: ties go to the lower index, output sorted by index", () => {
  // W_enc = [[1, 1, 0], [0, 0, 1]], no biases, no b_dec: h = [x0, x0, x1].
  // x = [2, 1]: h = [2, 2, 1]; k = 1 → latent 0 beats its equal latent 1.
  assert.deepEqual(enc1(tinyTies(1), new Float32Array([2, 1])), [[0, 2]]);
  // x = [1, 2]: h = [1, 1, 2]; k = 2 → latent 2 first, then 0 beats 1; listed by index.
  assert.deepEqual(enc1(tinyTies(2), new Float32Array([1, 2])), [[0, 1], [2, 2]]);
  // x = [−1, −3]: h = [−1, −1, −3]; the top 2 are both negative → nothing.
  assert.deepEqual(enc1(tinyTies(2), new Float32Array([-1, -3])), []);
});

Deno.test("ReferenceEncoder encodes each row of a batch", async () => {
  const enc = new ReferenceEncoder(tiny());
  assert.equal(enc.dIn, 2);
  assert.equal(enc.dSae, 3);
  // row 0 as above; row 1: x = [−1, 2] → h = [4.5, 3.25, −5]
  const out = await enc.encode(new Float32Array([2, 0, -1, 2]), 2);
  assert.deepEqual(out.map(pairs), [[[0, 3.5], [1, 0.25]], [[0, 4.5], [1, 3.25]]]);
  assert.ok(out[0].indices instanceof Uint32Array && out[0].values instanceof Float32Array);
  await enc.close();
  assert.throws(() => referenceEncode(tiny(), new Float32Array(3), 2), RangeError);
});
