import assert from "node:assert/strict";
import {
  referenceEncode,
  ReferenceEncoder,
  referenceGatePreActivations,
  referenceNormStats,
  referencePreActivations,
} from "./reference_encoder.ts";
import { canonicalWatch, EncoderConfigError, EncoderInputError } from "./encoder_checks.ts";
import type { SaeWeights, SparseLatents } from "./sae.ts";
import { randomVariant, variantName, VARIANTS } from "./testdata/random_variants.ts";
import {
  LN_S,
  tiny,
  tinyGated,
  tinyLayerNorm,
  tinyNormRescale,
  tinyTies,
  tinyTranscoder,
} from "./testdata/tiny_sae.ts";

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

/** Pairs rounded to 1e-9 relative, for hand values that carry f32 rounding (ln 2, LN_S). */
function close(got: [number, number][], want: [number, number][], where: string): void {
  assert.equal(
    got.length,
    want.length,
    `${where}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`,
  );
  got.forEach(([i, v], p) => {
    assert.equal(i, want[p][0], `${where}: index`);
    assert.ok(
      Math.abs(v - want[p][1]) <= 1e-6 * (1 + Math.abs(want[p][1])),
      `${where}: ${v} vs ${want[p][1]}`,
    );
  });
}

Deno.test("gated: gate from x̃@W_enc + b_gate, magnitude relu((x̃@W_enc)·exp(r_mag) + b_mag)", () => {
  // See tinyGated: x = [2, 0] → f = [5, 0, 0]; x = [−1, 2] → f = [7, 7, 0].
  const out = referenceEncode(tinyGated(), new Float32Array([2, 0, -1, 2]), 2).map(pairs);
  close(out[0], [[0, 5]], "x=[2,0]");
  close(out[1], [[0, 7], [1, 7]], "x=[-1,2]");
  // Pre-activations: magnitude [5, 4, −0.25], gate [1, −0.5, 0.5].
  const x = new Float32Array([2, 0]);
  const mag = [...referencePreActivations(tinyGated(), x)];
  [5, 4, -0.25].forEach((v, i) => assert.ok(Math.abs(mag[i] - v) < 1e-6, `mag ${i}`));
  assert.deepEqual([...referenceGatePreActivations(tinyGated(), x)], [1, -0.5, 0.5]);
  assert.throws(() => referenceGatePreActivations(tiny(), x), EncoderConfigError);
});

Deno.test("layer_norm: unbiased σ, eps added to σ, then b_dec and W_enc", () => {
  // See tinyLayerNorm: x = [1, 2, 3] → f = [2s, 1 + s], s = 1/(1 + 1e-5);
  // x = [5, 5, 5] → σ = 0, x_n = 0, f = [0, 1].
  const out = referenceEncode(tinyLayerNorm(), new Float32Array([1, 2, 3, 5, 5, 5]), 2).map(pairs);
  close(out[0], [[0, 2 * LN_S], [1, 1 + LN_S]], "x=[1,2,3]");
  assert.deepEqual(out[1], [[1, 1]]);
  // μ = 2, σ = 1: in = (x − 2)·s, out = y·1 + 2.
  assert.deepEqual(referenceNormStats(tinyLayerNorm(), new Float32Array([1, 2, 3])), {
    inShift: 2,
    inMul: LN_S,
    outScale: 1,
    outShift: 2,
  });
});

Deno.test("constant_norm_rescale: x·√dIn/‖x‖, and a zero vector encodes as 0", () => {
  // See tinyNormRescale: [2, 2] → [4.5, 1.25, 0]; [−3, 3] → [2.5, 3.25, 0]; [0, 0] → h = [1.5, 2.25, −2.5].
  const out = referenceEncode(tinyNormRescale(), new Float32Array([2, 2, -3, 3, 0, 0]), 3).map(
    pairs,
  );
  close(out[0], [[0, 4.5], [1, 1.25]], "x=[2,2]");
  close(out[1], [[0, 2.5], [1, 3.25]], "x=[-3,3]");
  assert.deepEqual(out[2], [[0, 1.5], [1, 2.25]]);
  // Scale-invariant: 10·x encodes like x.
  close(pairs(referenceEncode(tinyNormRescale(), new Float32Array([20, 20]), 1)[0]), out[0], "10x");
  assert.deepEqual(referenceNormStats(tinyNormRescale(), new Float32Array([0, 0])), {
    inShift: 0,
    inMul: 0,
    outScale: 0,
    outShift: 0,
  });
});

Deno.test("transcoder: never subtracts b_dec; asking it to is an error", () => {
  // See tinyTranscoder: x = [2, 0] → f = [2.5, 0, 0]; x = [−1, 2] → f = [3.5, 2.25, 0].
  const out = referenceEncode(tinyTranscoder(), new Float32Array([2, 0, -1, 2]), 2).map(pairs);
  assert.deepEqual(out, [[[0, 2.5]], [[0, 3.5], [1, 2.25]]]);
  const bad = tinyTranscoder({ applyBDecToInput: true });
  assert.throws(() => referenceEncode(bad, new Float32Array(2), 1), (e: Error) => {
    assert.ok(e instanceof EncoderConfigError && e instanceof TypeError);
    assert.match(e.message, /expected applyBDecToInput false, found true/);
    return true;
  });
  // With constant_norm_rescale: x = [2, 2] → x_n = [1, 1] → f = [3.5, 0.25, 0].
  close(
    pairs(
      referenceEncode(
        tinyTranscoder({ normalize: "constant_norm_rescale" }),
        new Float32Array([2, 2]),
        1,
      )[0],
    ),
    [[0, 3.5], [1, 0.25]],
    "transcoder+rescale",
  );
});

Deno.test("watch: only the watched latents are reported, by SAE index", () => {
  const x = new Float32Array([2, 0]);
  // standard f = [3.5, 0.25, 0]: watching {1, 2} (given unsorted, with a duplicate) → [(1, 0.25)]
  assert.deepEqual(pairs(referenceEncode(tiny(), x, 1, new Uint32Array([2, 1, 2]))[0]), [[
    1,
    0.25,
  ]]);
  // topk k = 1 picks latent 0 among all latents; watching {1} reports nothing, not latent 1.
  const tk = tiny({ architecture: "topk", k: 1 });
  assert.deepEqual(pairs(referenceEncode(tk, x, 1, new Uint32Array([1]))[0]), []);
  assert.deepEqual(pairs(referenceEncode(tk, x, 1, new Uint32Array([0, 1]))[0]), [[0, 3.5]]);
  assert.deepEqual([...canonicalWatch(new Uint32Array([5, 1, 5]), 8)], [1, 5]);
  assert.throws(() => referenceEncode(tiny(), x, 1, new Uint32Array([3])), EncoderInputError);
});

Deno.test("watch equals the full encode restricted to the watched latents, every variant", () => {
  for (const v of VARIANTS) {
    const sae = randomVariant(v, 12, 40, 3);
    const x = new Float32Array(5 * 12).map((_, i) => Math.sin(i * 1.7) * 2);
    const watch = new Uint32Array([39, 0, 7, 8, 21, 7]);
    const full = referenceEncode(sae, x, 5);
    const watched = referenceEncode(sae, x, 5, watch);
    const keep = new Set(watch);
    full.forEach((f, t) => {
      const want = pairs(f).filter(([i]) => keep.has(i));
      assert.deepEqual(pairs(watched[t]), want, `${variantName(v)} t=${t}`);
    });
  }
});

Deno.test("ReferenceEncoder refuses an SAE it cannot encode before any work", () => {
  assert.throws(() => new ReferenceEncoder(tiny({ architecture: "topk" })), EncoderConfigError);
});
