/**
 * How a stored tensor is placed into its f32 destination (as stored,
 * transposed, or one slice of a middle axis), and the row copy that does it.
 *
 * @module
 */
import { SafetensorsError } from "./safetensors.ts";

/**
 * How a tensor is placed into its f32 destination:
 * - `"as-stored"`: same shape and order;
 * - `"transposed"`: a 2-D `[R, C]` tensor becomes `[C, R]` (nn.Linear weights);
 * - `{ select }`: a 3-D `[A, B, C]` tensor becomes `[A, C]` = `t[:, select, :]`
 *   (one output layer of a cross-layer transcoder decoder).
 */
export type TensorLayout = "as-stored" | "transposed" | { select: number };

/** Rows of the stored tensor a layout walks over, and the length of each row. */
export function rowGeometry(
  shape: number[],
  layout: TensorLayout,
): { rows: number; rowLen: number } {
  if (layout === "as-stored") {
    // One "row" per element block; the split only matters for chunking.
    const n = shape.reduce((a, b) => a * b, 1);
    const rowLen = shape.length > 1 ? shape[shape.length - 1] : Math.max(n, 1);
    return { rows: rowLen === 0 ? 0 : n / rowLen, rowLen };
  }
  if (layout === "transposed") {
    if (shape.length !== 2) {
      throw new SafetensorsError(`a transposed read needs a 2-D tensor, found shape [${shape}]`);
    }
    return { rows: shape[0], rowLen: shape[1] };
  }
  if (shape.length !== 3 || layout.select < 0 || layout.select >= shape[1]) {
    throw new SafetensorsError(
      `selecting index ${layout.select} of axis 1 needs a 3-D tensor with more than ${layout.select} entries on that axis, found shape [${shape}]`,
    );
  }
  return { rows: shape[0], rowLen: shape[1] * shape[2] };
}

/** Shape of the destination of `layout` applied to a tensor of `shape`. */
export function layoutShape(shape: number[], layout: TensorLayout): number[] {
  if (layout === "as-stored") return shape;
  if (layout === "transposed") return [shape[1], shape[0]];
  return [shape[0], shape[2]];
}

/**
 * Place widened rows `r0 … r0 + n − 1` of a stored tensor (given in `src`,
 * `n × rowLen` values) into `out` according to `layout`.
 */
export function placeRows(
  out: Float32Array,
  src: Float32Array,
  r0: number,
  n: number,
  shape: number[],
  layout: TensorLayout,
): void {
  if (layout === "as-stored") {
    const rowLen = rowGeometry(shape, layout).rowLen;
    out.set(src.subarray(0, n * rowLen), r0 * rowLen);
    return;
  }
  if (layout === "transposed") {
    const [rows, cols] = shape;
    // out[c, r] = src[r, c]: walk the destination rows so writes stay sequential per c.
    for (let c = 0; c < cols; c++) {
      const base = c * rows + r0;
      for (let r = 0; r < n; r++) out[base + r] = src[r * cols + c];
    }
    return;
  }
  const inner = shape[2];
  const rowLen = shape[1] * inner;
  const off = layout.select * inner;
  for (let r = 0; r < n; r++) {
    out.set(src.subarray(r * rowLen + off, r * rowLen + off + inner), (r0 + r) * inner);
  }
}

/**
 * Apply `layout` to an f32 tensor already in memory (used for formats read
 * whole, such as `.npz`).
 *
 * @example
 * ```ts
 * rearrange(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], "transposed"); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function rearrange(
  values: Float32Array,
  shape: number[],
  layout: TensorLayout,
): Float32Array {
  if (layout === "as-stored") return values;
  const { rows } = rowGeometry(shape, layout);
  const out = new Float32Array(layoutShape(shape, layout).reduce((a, b) => a * b, 1));
  placeRows(out, values, 0, rows, shape, layout);
  return out;
}
