/**
 * onnxruntime encoder vs the plain-TypeScript reference.
 *
 * Tolerance rule (written down once, used by every comparison below):
 *   - tol(v) = 1e-4 · (1 + |v|), v the reference value. ORT accumulates in
 *     f32, the reference in f64; over d_in ≤ 64 the f32 error is ~1e-6.
 *   - A latent active on both sides must agree within tol(v_ref).
 *   - A latent active on one side only is accepted only when the decision
 *     was within tolerance of flipping: |h| ≤ tol(h) for every architecture
 *     (relu boundary); jumprelu also when |h − θ| ≤ tol(θ); topk also when
 *     |h − h_(k)| ≤ tol(h_(k)), h_(k) the reference's k-th largest score.
 *     Everything else must have identical support.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rng } from "../core/random.ts";
import { referenceEncode, referencePreActivations } from "../core/reference_encoder.ts";
import type { SaeArchitecture, SaeWeights, SparseLatents, WeightDtype } from "../core/sae.ts";
import { tiny, tinyTies } from "../core/testdata/tiny_sae.ts";
import { randomSae } from "../formats/random_sae.ts";
import { loadSaeLens, writeSaeLensFolder } from "../formats/saelens.ts";
import { createOrtEncoder } from "./ort_encoder.ts";

const tol = (v: number) => 1e-4 * (1 + Math.abs(v));

/** Compare one token; returns how many support flips the tolerance rule excused. */
function compareToken(
  sae: SaeWeights,
  x: Float32Array,
  got: SparseLatents,
  want: SparseLatents,
  where: string,
): number {
  for (let p = 1; p < got.indices.length; p++) {
    assert.ok(got.indices[p - 1] < got.indices[p], `${where}: indices not strictly ascending`);
  }
  const g = new Map<number, number>();
  got.indices.forEach((i, p) => g.set(i, got.values[p]));
  const w = new Map<number, number>();
  want.indices.forEach((i, p) => w.set(i, want.values[p]));
  for (const [i, v] of g) assert.notEqual(v, 0, `${where}: latent ${i} reported with value 0`);

  let h: Float64Array | null = null;
  let kth = NaN;
  let excused = 0;
  for (const i of new Set([...g.keys(), ...w.keys()])) {
    if (g.has(i) && w.has(i)) {
      const d = Math.abs(g.get(i)! - w.get(i)!);
      assert.ok(d <= tol(w.get(i)!), `${where}: latent ${i}: ort ${g.get(i)} vs ref ${w.get(i)}`);
      continue;
    }
    if (!h) {
      h = referencePreActivations(sae, x);
      if (sae.architecture === "topk") kth = [...h].sort((a, b) => b - a)[sae.k! - 1];
    }
    const hi = h[i];
    const nearZero = Math.abs(hi) <= tol(hi);
    const nearGate = sae.architecture === "jumprelu" &&
      Math.abs(hi - sae.threshold![i]) <= tol(sae.threshold![i]);
    const nearKth = sae.architecture === "topk" && Math.abs(hi - kth) <= tol(kth);
    assert.ok(
      nearZero || nearGate || nearKth,
      `${where}: latent ${i} only in ${g.has(i) ? "ort" : "reference"} (h = ${hi})`,
    );
    excused++;
  }
  return excused;
}

interface Case {
  architecture: SaeArchitecture;
  rescale?: boolean;
  applyBDec?: boolean;
}

const CASES: Case[] = [
  { architecture: "standard" },
  { architecture: "standard", applyBDec: false },
  { architecture: "jumprelu" },
  { architecture: "topk" },
  { architecture: "topk", rescale: true },
];
const DTYPES: WeightDtype[] = ["float32", "float16", "bfloat16"];
const BATCHES = [1, 3, 64, 200];

Deno.test("ort encoder matches the reference for every architecture, dtype and batch size", async () => {
  const dIn = 48, dSae = 163; // not a multiple of 8: the scan's block and tail paths both run
  let tokensChecked = 0, latentsChecked = 0, excused = 0;
  for (const c of CASES) {
    for (const dtype of DTYPES) {
      // Go through the on-disk format so f16/bf16 widening is part of what is checked.
      const dir = await Deno.makeTempDir({ prefix: "ort_test_" });
      await writeSaeLensFolder(
        dir,
        randomSae({
          architecture: c.architecture,
          dIn,
          dSae,
          k: 12,
          seed: 11,
          dtype,
          rescaleActsByDecoderNorm: c.rescale,
          applyBDecToInput: c.applyBDec,
        }),
      );
      const sae = await loadSaeLens(dir);
      await Deno.remove(dir, { recursive: true });
      assert.equal(sae.dtype, dtype);
      const enc = await createOrtEncoder(sae, { intraOpThreads: 2 });
      const rng = new Rng(1000 + tokensChecked);
      for (const tokens of BATCHES) {
        const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1.5);
        const got = await enc.encode(x, tokens);
        const want = referenceEncode(sae, x, tokens);
        assert.equal(got.length, tokens);
        for (let t = 0; t < tokens; t++) {
          const where = `${c.architecture}${
            c.rescale ? "+rescale" : ""
          } ${dtype} N=${tokens} t=${t}`;
          excused += compareToken(sae, x.subarray(t * dIn, (t + 1) * dIn), got[t], want[t], where);
          latentsChecked += want[t].indices.length;
          if (c.architecture === "topk") assert.ok(got[t].indices.length <= sae.k!);
        }
        tokensChecked += tokens;
      }
      await enc.close();
    }
  }
  assert.ok(latentsChecked > 10_000, `only ${latentsChecked} latents compared`);
  // Flips must be rare accidents of rounding, not a systematic difference.
  assert.ok(excused <= latentsChecked / 1000, `${excused} support flips excused`);
});

function pairs(l: SparseLatents): [number, number][] {
  return Array.from(l.indices, (i, n) => [i, l.values[n]]);
}

async function encodeTiny(sae: SaeWeights, x: number[]): Promise<[number, number][][]> {
  const enc = await createOrtEncoder(sae);
  try {
    return (await enc.encode(new Float32Array(x), x.length / 2)).map(pairs);
  } finally {
    await enc.close();
  }
}

Deno.test("ort encoder reproduces the hand-computed cases exactly", async () => {
  // x = [2, 0] → h = [3.5, 0.25, −1.5]; x = [−1, 2] → h = [4.5, 3.25, −5] (see the reference test)
  assert.deepEqual(await encodeTiny(tiny({}), [2, 0, -1, 2]), [[[0, 3.5], [1, 0.25]], [[0, 4.5], [
    1,
    3.25,
  ]]]);
  // jumprelu θ = [3.5, 0.1, −2]: 3.5 > 3.5 fails (strict), 0.25 > 0.1 passes, −1.5 relu'd away
  const jr = tiny({ architecture: "jumprelu", threshold: new Float32Array([3.5, 0.1, -2]) });
  assert.deepEqual(await encodeTiny(jr, [2, 0]), [[[1, 0.25]]]);
  // topk rescale, norms [5, 0.5, 1]: h' = [17.5, 0.125, −1.5]
  const tk = tiny({ architecture: "topk", k: 2, rescaleActsByDecoderNorm: true });
  assert.deepEqual(await encodeTiny(tk, [2, 0]), [[[0, 17.5], [1, 0.125]]]);
  // Ties: W_enc = [[1, 1, 0], [0, 0, 1]], no biases: h = [x0, x0, x1]; the lower index wins.
  assert.deepEqual(await encodeTiny(tinyTies(1), [2, 1]), [[[0, 2]]]);
  assert.deepEqual(await encodeTiny(tinyTies(2), [1, 2, -1, -3]), [[[0, 1], [2, 2]], []]);
});

Deno.test("ort encoder: zero tokens, oversized input, batches do not alias", async () => {
  const sae = randomSae({ architecture: "standard", dIn: 8, dSae: 32, seed: 2 });
  const enc = await createOrtEncoder(sae);
  assert.equal(enc.dIn, 8);
  assert.equal(enc.dSae, 32);
  assert.deepEqual(await enc.encode(new Float32Array(0), 0), []);
  const rng = new Rng(5);
  const x = rng.fillGaussian(new Float32Array(3 * 8));
  // Only the first 2 rows are encoded when tokens = 2.
  const first = await enc.encode(x, 2);
  assert.equal(first.length, 2);
  const snapshot = first.map(pairs);
  const second = await enc.encode(rng.fillGaussian(new Float32Array(5 * 8)), 5);
  assert.equal(second.length, 5);
  assert.deepEqual(first.map(pairs), snapshot, "an earlier result changed after a later batch");
  const want = referenceEncode(sae, x, 2);
  for (let t = 0; t < 2; t++) {
    compareToken(sae, x.subarray(t * 8, (t + 1) * 8), first[t], want[t], `row ${t}`);
  }
  await assert.rejects(enc.encode(new Float32Array(7), 1), RangeError);
  await enc.close();
});

Deno.test("createOrtEncoder builds one session per SAE folder on disk", async () => {
  const dir = await Deno.makeTempDir();
  const sae = randomSae({ architecture: "jumprelu", dIn: 8, dSae: 16, seed: 3 });
  await writeSaeLensFolder(join(dir, "sae"), sae);
  const enc = await createOrtEncoder(await loadSaeLens(join(dir, "sae")));
  const x = new Rng(1).fillGaussian(new Float32Array(8));
  const [got] = await enc.encode(x, 1);
  compareToken(sae, x, got, referenceEncode(sae, x, 1)[0], "folder");
  await enc.close();
  await Deno.remove(dir, { recursive: true });
});
