import assert from "node:assert/strict";
import {
  AbsorptionTally,
  decoderCosines,
  familyMembers,
  familyValue,
  matrixRow,
  quantile,
  unitVector,
} from "./family.ts";

const row = (pairs: [number, number][]) => ({
  indices: Uint32Array.from(pairs.map(([i]) => i)),
  values: Float32Array.from(pairs.map(([, v]) => v)),
});

Deno.test("decoderCosines: hand-computed cosines, zero rows read 0, any scale of the direction", () => {
  // rows: (3, 4), (0, 2), (-1, 0), (0, 0); direction (1, 0) scaled by 5
  const wDec = new Float32Array([3, 4, 0, 2, -1, 0, 0, 0]);
  const got = [...decoderCosines(wDec, 2, new Float32Array([5, 0]))];
  assert.deepStrictEqual(got.map((c) => Math.round(c * 1e6) / 1e6), [0.6, 0, -1, 0]);
  // against row 0 itself: (3·3 + 4·4)/25 = 1; row 1: 8/(5·2) = 0.8
  const self = decoderCosines(wDec, 2, matrixRow(wDec, 2, 0));
  assert.ok(Math.abs(self[0] - 1) < 1e-6 && Math.abs(self[1] - 0.8) < 1e-6);
});

Deno.test("decoderCosines and unitVector refuse a direction of the wrong width or zero norm", () => {
  assert.throws(
    () => decoderCosines(new Float32Array(4), 2, [1, 0, 0]),
    /expected a concept direction of width 2 \(the decoder's\), found 3/,
  );
  assert.throws(() => unitVector([0, 0]), /nonzero finite norm, found norm 0/);
  assert.throws(() => unitVector([NaN, 1]), RangeError);
});

Deno.test("familyMembers: at least minCosine, highest first, ties by index, top N", () => {
  const cos = [0.5, 0.9, 0.2, 0.5, -0.9];
  assert.deepStrictEqual(familyMembers(cos, { minCosine: 0.5 }).map((m) => m.index), [1, 0, 3]);
  assert.deepStrictEqual(familyMembers(cos, { minCosine: 0.5, top: 2 }).map((m) => m.index), [
    1,
    0,
  ]);
  assert.deepStrictEqual(familyMembers(cos, { minCosine: 0.95 }), []);
});

Deno.test("familyValue: sum or max of activation × weight over active members", () => {
  const fam = { members: [1, 4, 6], weights: [1, 0.5, 0.25], combine: "sum" as const };
  // active: 1 at 2, 4 at 6, 5 (not a member) at 9
  const r = row([[1, 2], [4, 6], [5, 9]]);
  assert.equal(familyValue(r, fam), 2 + 3);
  assert.equal(familyValue(r, { ...fam, combine: "max" }), 3);
  assert.equal(familyValue(row([[5, 9]]), fam), 0);
});

Deno.test("AbsorptionTally: silent tokens, and the latents along the concept firing there", () => {
  // latent 0 is the concept; 1 and 2 point along it, 3 against it
  const t = new AbsorptionTally({ latent: 0, cosines: [1, 0.7, 0.4, -0.5] });
  t.add(row([[0, 2], [1, 1]])); // the concept fires: not silent
  t.add(row([[1, 3], [3, 1]])); // silent: 1 (3 counts only for cosine > 0, it has −0.5)
  t.add(row([[1, 1], [2, 2]])); // silent: 1, 2
  t.add(row([])); // silent, nothing fires
  const r = t.report();
  assert.equal(r.high, 4);
  assert.equal(r.silent, 3);
  assert.deepStrictEqual(r.candidates.map((c) => [c.index, c.tokens, c.share]), [
    [1, 2, 2 / 3],
    [2, 1, 1 / 3],
  ]);
  assert.equal(t.report(1).candidates.length, 1);
});

Deno.test("quantile: nearest rank", () => {
  assert.equal(quantile([5, 1, 3, 2, 4], 0.8), 4);
  assert.equal(quantile([5, 1, 3, 2, 4], 1), 5);
  assert.equal(quantile([5, 1, 3, 2, 4], 0), 1);
  assert.ok(Number.isNaN(quantile([], 0.5)));
});
