import assert from "node:assert/strict";
import {
  evaluateReconstruction,
  referenceDecode,
  referenceEvaluate,
  referenceProbe,
} from "./decode.ts";
import { referenceEncode } from "./reference_encoder.ts";
import { EncoderInputError } from "./encoder_checks.ts";
import type { LinearProbe, SaeWeights, SparseLatents } from "./sae.ts";
import { LN_S, tiny, tinyLayerNorm, tinyNormRescale, tinyTranscoder } from "./testdata/tiny_sae.ts";

function near(got: ArrayLike<number>, want: number[], where: string, eps = 1e-6): void {
  assert.equal(got.length, want.length, `${where}: length`);
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= eps * (1 + Math.abs(want[i])),
      `${where}[${i}]: ${got[i]} vs ${want[i]}`,
    );
  }
}

function decodeOf(sae: SaeWeights, x: number[]): Float32Array {
  const xs = new Float32Array(x);
  const tokens = x.length / sae.dIn;
  return referenceDecode(sae, referenceEncode(sae, xs, tokens), xs);
}

Deno.test("decode: f @ W_dec + b_dec", () => {
  // x = [2, 0] → f = [3.5, 0.25, 0]: 3.5·[3, 4] + 0.25·[0, 0.5] + [1, −1] = [11.5, 13.125]
  // x = [−1, 2] → f = [4.5, 3.25, 0]: [13.5, 18] + [0, 1.625] + [1, −1] = [14.5, 18.625]
  assert.deepEqual([...decodeOf(tiny(), [2, 0, -1, 2])], [11.5, 13.125, 14.5, 18.625]);
  // Explicit latents, unsorted, index 2 included: 2·[1, 0] + 1·[3, 4] + [1, −1] = [6, 3]
  const lat: SparseLatents = { indices: new Uint32Array([2, 0]), values: new Float32Array([2, 1]) };
  assert.deepEqual([...referenceDecode(tiny(), [lat], new Float32Array(2))], [6, 3]);
  assert.throws(
    () =>
      referenceDecode(
        tiny(),
        [{ indices: new Uint32Array([3]), values: new Float32Array([1]) }],
        new Float32Array(2),
      ),
    EncoderInputError,
  );
  assert.throws(() => referenceDecode(tiny(), [lat, lat], new Float32Array(3)), EncoderInputError);
});

Deno.test("decode: topk with rescale divides by the decoder norm first", () => {
  // norms [5, 0.5, 1]; encode gives (0, 17.5), (1, 0.125); ÷ norms → 3.5, 0.25: same as standard.
  const sae = tiny({ architecture: "topk", k: 2, rescaleActsByDecoderNorm: true });
  assert.deepEqual([...decodeOf(sae, [2, 0])], [11.5, 13.125]);
});

Deno.test("decode: layer_norm and constant_norm_rescale are undone for SAEs", () => {
  // tinyLayerNorm: [1, 2, 3] → [2s + 2, 3, 3 + s]; [5, 5, 5] → [5, 5, 5]
  near(decodeOf(tinyLayerNorm(), [1, 2, 3, 5, 5, 5]), [2 * LN_S + 2, 3, 3 + LN_S, 5, 5, 5], "ln");
  // tinyNormRescale: [2, 2] → [29, 35.25]; [−3, 3] → [25.5, 31.875]; [0, 0] → [0, 0]
  near(decodeOf(tinyNormRescale(), [2, 2, -3, 3, 0, 0]), [29, 35.25, 25.5, 31.875, 0, 0], "cnr");
});

Deno.test("decode: transcoder adds x_raw @ W_skip and does not undo the normalisation", () => {
  // tinyTranscoder: [2, 0] → [5, 0, 1]; [−1, 2] → [3, 4.25, −4]
  assert.deepEqual([...decodeOf(tinyTranscoder(), [2, 0, -1, 2])], [5, 0, 1, 3, 4.25, -4]);
  // constant_norm_rescale, x = [2, 2]: [4, 0.25, −1] + skip on raw x [2, 2, 0] = [6, 2.25, −1]
  near(
    decodeOf(tinyTranscoder({ normalize: "constant_norm_rescale" }), [2, 2]),
    [6, 2.25, -1],
    "tc",
  );
  // Without the skip, x = [2, 0]: f = [2.5, 0, 0] → [2.5, 0, 0] + [0.5, 0, −1] = [3, 0, −1].
  assert.deepEqual([...decodeOf(tinyTranscoder({ wSkip: undefined }), [2, 0])], [3, 0, -1]);
});

Deno.test("evaluate: perfect reconstruction gives mse 0 and fvu 0", () => {
  const sae = tinyTranscoder();
  const x = new Float32Array([2, 0, -1, 2]);
  const r = referenceEvaluate(sae, x, 2, new Float32Array([5, 0, 1, 3, 4.25, -4]));
  // f = [2.5, 0, 0] and [3.5, 2.25, 0]: L0 1 and 2; latent 2 never fires.
  assert.deepEqual(r, { tokens: 2, mse: 0, fvu: 0, meanL0: 1.5, deadLatents: 1, dSae: 3 });
  // layer_norm token [5, 5, 5] reconstructs exactly: one token, no variance, fvu 0.
  const ln = referenceEvaluate(tinyLayerNorm(), new Float32Array([5, 5, 5]), 1);
  assert.deepEqual(ln, { tokens: 1, mse: 0, fvu: 0, meanL0: 1, deadLatents: 1, dSae: 2 });
});

Deno.test("evaluate: a known error gives the hand-computed mse and fvu", () => {
  // Transcoder predictions [5, 0, 1], [3, 4.25, −4]; target [6, 0, 1], [3, 4.25, −2]:
  // squared errors 1 and 4 → Σ = 5, mse = 5/(2·3) = 5/6.
  // ȳ = [4.5, 2.125, −0.5]; deviations ±[1.5, −2.125, 1.5] → 2.25 + 4.515625 + 2.25 = 9.015625
  // per token, Σ = 18.03125 → fvu = 5/18.03125.
  const r = referenceEvaluate(
    tinyTranscoder(),
    new Float32Array([2, 0, -1, 2]),
    2,
    new Float32Array([6, 0, 1, 3, 4.25, -2]),
  );
  assert.equal(r.mse, 5 / 6);
  assert.equal(r.fvu, 5 / 18.03125);
  // SAE against its own input: x = [2, 0], [−1, 2]; ŷ = [11.5, 13.125], [14.5, 18.625].
  // errors [9.5, 13.125], [15.5, 16.625] → 90.25 + 172.265625 + 240.25 + 276.390625 = 779.15625,
  // mse = 779.15625/4; ȳ = [0.5, 1], Σ‖x − ȳ‖² = 2·(1.5² + 1²) = 6.5, fvu = 779.15625/6.5.
  const s = referenceEvaluate(tiny(), new Float32Array([2, 0, -1, 2]), 2);
  assert.equal(s.mse, 779.15625 / 4);
  assert.equal(s.fvu, 779.15625 / 6.5);
  assert.equal(s.meanL0, 2);
  assert.equal(s.deadLatents, 1);
  // One token (no variance) with an error: fvu is Infinity.
  assert.equal(referenceEvaluate(tiny(), new Float32Array([2, 0]), 1).fvu, Infinity);
});

Deno.test("evaluate: latents from any encoder; zero values do not count towards L0", () => {
  const lat: SparseLatents[] = [
    { indices: new Uint32Array([0, 1]), values: new Float32Array([3.5, 0]) },
    { indices: new Uint32Array([]), values: new Float32Array([]) },
  ];
  const r = evaluateReconstruction(tiny(), new Float32Array([2, 0, -1, 2]), 2, lat);
  assert.equal(r.meanL0, 0.5);
  assert.equal(r.deadLatents, 2);
});

Deno.test("evaluate: a transcoder needs a target; sizes are checked", () => {
  const x = new Float32Array([2, 0]);
  const lat = referenceEncode(tinyTranscoder(), x, 1);
  assert.throws(() => evaluateReconstruction(tinyTranscoder(), x, 1, lat), (e: Error) => {
    assert.ok(e instanceof EncoderInputError);
    assert.match(e.message, /expected a target activation/);
    return true;
  });
  assert.throws(
    () => evaluateReconstruction(tinyTranscoder(), x, 1, lat, new Float32Array(2)),
    /expected a target of 1 × 3 = 3 values, found 2/,
  );
  assert.throws(() => evaluateReconstruction(tiny(), x, 2, lat), /expected 2 latent rows, found 1/);
  assert.throws(() => evaluateReconstruction(tiny(), x, 0, []), /expected at least 1 token/);
});

const PROBE: LinearProbe = {
  kind: "probe",
  dIn: 2,
  n: 2,
  directions: new Float32Array([1, 2, -1, 0]),
  bias: new Float32Array([0.5, 0]),
  link: "raw",
  source: "probe",
};

Deno.test("referenceProbe: every direction scored, raw and logistic", () => {
  // x = [1, 1]: [1 + 2 + 0.5, −1 + 0] = [3.5, −1]; x = [0, 0]: the biases [0.5, 0]
  const raw = referenceProbe(PROBE, new Float32Array([1, 1, 0, 0]), 2);
  assert.deepEqual(raw.map((l) => [[...l.indices], [...l.values]]), [[[0, 1], [3.5, -1]], [[0, 1], [
    0.5,
    0,
  ]]]);
  const [lg] = referenceProbe({ ...PROBE, link: "logistic" }, new Float32Array([1, 1]), 1);
  near(lg.values, [1 / (1 + Math.exp(-3.5)), 1 / (1 + Math.exp(1))], "logistic");
  assert.throws(() => referenceProbe(PROBE, new Float32Array(3), 2), EncoderInputError);
  assert.throws(
    () => referenceProbe({ ...PROBE, n: 3 }, new Float32Array(2), 1),
    /expected directions \[3, 2\]/,
  );
});
