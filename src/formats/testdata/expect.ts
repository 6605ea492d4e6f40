/**
 * Compare an SAE's dense encoding with the Python reference outputs that
 * `torch_fixtures.py` computed from the upstream formulas.
 *
 * @module
 */
import assert from "node:assert/strict";
import { referenceEncode } from "../../core/reference_encoder.ts";
import type { SaeWeights } from "../../core/sae.ts";

/** One fixture case from `expected.json`. */
export interface ExpectedCase {
  path: string;
  inputs: number[][];
  expected: number[][];
  d: number;
  n: number;
  wEnc?: number[];
  wDec?: number[];
}

/**
 * Assert that `sae` encodes every input to the expected dense latents (within 1e-5).
 *
 * @example
 * ```ts
 * import { loadOpenAiSae } from "../openai.ts";
 * declare const c: ExpectedCase;
 * assertEncodesLike(await loadOpenAiSae(c.path), c);
 * ```
 */
export function assertEncodesLike(sae: SaeWeights, c: ExpectedCase): void {
  assert.equal(sae.dIn, c.d);
  assert.equal(sae.dSae, c.n);
  const x = Float32Array.from(c.inputs.flat());
  const out = referenceEncode(sae, x, c.inputs.length);
  out.forEach((row, t) => {
    const dense = new Array<number>(sae.dSae).fill(0);
    row.indices.forEach((i, j) => (dense[i] = row.values[j]));
    c.expected[t].forEach((want, i) => {
      assert.ok(
        Math.abs(dense[i] - want) <= 1e-5 * Math.max(1, Math.abs(want)),
        `token ${t} latent ${i}: expected ${want}, found ${dense[i]} (row ${dense})`,
      );
    });
  });
}
