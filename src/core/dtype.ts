/**
 * Conversions between the tensor element types latentwatch reads and writes
 * (f32, f16, bf16). Pure and allocation-light: pass `out` to reuse a buffer.
 *
 * @module
 */

/** Element types of activations and weights on the wire and on disk. */
export type Dtype = "f32" | "f16" | "bf16";

/** Bytes per element of each {@linkcode Dtype}. */
export const BYTES_PER_ELEMENT: Readonly<Record<Dtype, number>> = { f32: 4, f16: 2, bf16: 2 };

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * Widen IEEE half-precision bits to f32 (exact).
 *
 * @example
 * ```ts
 * f16ToF32(new Uint16Array([0x3c00])); // Float32Array [1]
 * ```
 */
export function f16ToF32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const halves = new Float16Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = halves[i];
  return out;
}

/**
 * Widen bfloat16 bits (the upper half of an f32) to f32 (exact).
 *
 * @example
 * ```ts
 * bf16ToF32(new Uint16Array([0x3f80])); // Float32Array [1]
 * ```
 */
export function bf16ToF32(
  src: Uint16Array,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/**
 * Round f32 values to IEEE half precision (round to nearest even), as bits.
 *
 * @example
 * ```ts
 * f32ToF16(new Float32Array([1])); // Uint16Array [0x3c00]
 * ```
 */
export function f32ToF16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  const halves = new Float16Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) halves[i] = src[i];
  return out;
}

/**
 * Round f32 values to bfloat16 (round to nearest even, NaN stays NaN), as bits.
 *
 * @example
 * ```ts
 * f32ToBf16(new Float32Array([1])); // Uint16Array [0x3f80]
 * ```
 */
export function f32ToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) {
    f32Scratch[0] = src[i];
    const bits = u32Scratch[0];
    if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
      out[i] = (bits >>> 16) | 0x0040; // quiet NaN
    } else {
      out[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/**
 * Decode little-endian tensor bytes of `dtype` into f32. For f32 input whose
 * offset is 4-byte aligned this returns a view, not a copy, unless `out`
 * (room for exactly the values) is given: then the values are written there.
 *
 * @example
 * ```ts
 * toF32(new Uint8Array([0, 0, 0x80, 0x3f]), "f32"); // Float32Array [1]
 * ```
 */
export function toF32(
  bytes: Uint8Array,
  dtype: Dtype,
  out?: Float32Array,
): Float32Array {
  const n = bytes.byteLength / BYTES_PER_ELEMENT[dtype];
  if (out !== undefined && out.length !== n) {
    throw new RangeError(`toF32: expected room for ${n} values, found ${out.length}`);
  }
  if (dtype === "f32") {
    if (out !== undefined) {
      new Uint8Array(out.buffer, out.byteOffset, bytes.byteLength).set(bytes);
      return out;
    }
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    return new Float32Array(copyBytes(bytes).buffer);
  }
  const halves = bytes.byteOffset % 2 === 0
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, n)
    : new Uint16Array(copyBytes(bytes).buffer);
  return dtype === "f16" ? f16ToF32(halves, out) : bf16ToF32(halves, out);
}

/**
 * A copy of `bytes` in a fresh, exactly sized ArrayBuffer. (Not `slice()`:
 * on a Node Buffer, as NATS hands out, `slice()` is a view into a shared pool.)
 */
function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}

/**
 * Encode f32 values as little-endian bytes of `dtype` (rounding to nearest
 * even for f16 and bf16).
 *
 * @example
 * ```ts
 * fromF32(new Float32Array([1]), "bf16"); // Uint8Array [0x80, 0x3f]
 * ```
 */
export function fromF32(values: Float32Array, dtype: Dtype): Uint8Array {
  if (dtype === "f32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = dtype === "f16" ? f32ToF16(values) : f32ToBf16(values);
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}
