/**
 * The arithmetic of steering operations (`docs/steering.md`): reading a
 * latent's value from one token's activation, and applying clamp, ablate,
 * add and cap to a row in place. Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import type { LatentRead, SteerOp } from "./protocol.ts";
/** `pre = w·x + b` over row `row` of `x` (`dModel` wide), accumulated in f64. */
function dotRow(w: Float32Array, x: Float32Array, offset: number): number {
  let s = 0;
  for (let j = 0; j < w.length; j++) s += w[j] * x[offset + j];
  return s;
}

/**
 * The latent's value on one token: `pre = w·x + b`, `pre` when above the threshold, else 0.
 *
 * @example
 * ```ts
 * readLatent({ w: new Float32Array([1, 0]), b: -1, threshold: 0 }, new Float32Array([3, 9])); // 2
 * ```
 */
export function readLatent(read: LatentRead, x: Float32Array, offset = 0): number {
  const pre = dotRow(read.w, x, offset) + read.b;
  return pre > read.threshold ? pre : 0;
}

/**
 * Apply one operation to row `row` of `x` (`[tokens, dModel]`) in place, as
 * `docs/steering.md` defines it. Returns false when the row is unchanged
 * (an abort, a cap below its max, an ablation of an inactive latent).
 *
 * @example
 * ```ts
 * const x = new Float32Array([3, 0]);
 * applyOp({ kind: "cap", max: 1, direction: new Float32Array([1, 0]) }, x, 0, 2); // true; x = [1, 0]
 * ```
 */
export function applyOp(op: SteerOp, x: Float32Array, row: number, dModel: number): boolean {
  const o = row * dModel;
  let coef: number;
  let dir: Float32Array;
  switch (op.kind) {
    case "clamp":
      coef = op.value - readLatent(op.read, x, o);
      dir = op.direction;
      break;
    case "ablate":
      coef = -readLatent(op.read, x, o);
      dir = op.direction;
      break;
    case "add":
      coef = op.scale;
      dir = op.vector;
      break;
    case "cap": {
      const p = dotRow(op.direction, x, o);
      if (!(p > op.max)) return false;
      coef = op.max - p;
      dir = op.direction;
      break;
    }
    case "abort":
      return false;
  }
  if (coef === 0) return false;
  for (let j = 0; j < dModel; j++) x[o + j] += coef * dir[j];
  return true;
}
