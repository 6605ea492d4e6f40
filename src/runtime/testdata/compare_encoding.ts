/**
 * Comparing an encoder's sparse output with the plain-TypeScript reference,
 * under the tolerance rule of `ort_encoder_test.ts` (shared by the tests of
 * every encoder).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  referenceGatePreActivations,
  referencePreActivations,
} from "../../core/reference_encoder.ts";
import type { SaeWeights, SparseLatents } from "../../core/sae.ts";

/** The tolerance of a value `v`: `1e-4 · (1 + |v|)`. */
export const tol = (v: number): number => 1e-4 * (1 + Math.abs(v));

/**
 * Compare one token; returns how many support flips the tolerance rule excused.
 *
 * @example
 * ```ts
 * import type { SaeWeights, SparseLatents } from "../../core/sae.ts";
 * declare const sae: SaeWeights, x: Float32Array, got: SparseLatents, want: SparseLatents;
 * compareToken(sae, x, got, want, "token 0");
 * ```
 */
export function compareToken(
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
  let gate: Float64Array | null = null;
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
      if (sae.architecture === "gated") gate = referenceGatePreActivations(sae, x);
    }
    const hi = h[i];
    const nearZero = Math.abs(hi) <= tol(hi);
    const nearGate = sae.architecture === "jumprelu" &&
      Math.abs(hi - sae.threshold![i]) <= tol(sae.threshold![i]);
    const nearKth = sae.architecture === "topk" && Math.abs(hi - kth) <= tol(kth);
    const nearOpen = gate !== null && Math.abs(gate[i]) <= tol(gate[i]);
    assert.ok(
      nearZero || nearGate || nearKth || nearOpen,
      `${where}: latent ${i} only in ${g.has(i) ? "ort" : "reference"} (h = ${hi})`,
    );
    excused++;
  }
  return excused;
}
