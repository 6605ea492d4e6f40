/**
 * Writing safetensors files in the upstream layout: u64 LE header length,
 * JSON header padded with spaces to a multiple of 8 bytes, then the data.
 *
 * @module
 */
import { SAFETENSORS_ITEMSIZE, SafetensorsError, type SafetensorsTensor } from "./safetensors.ts";

/**
 * Serialise tensors in the upstream layout: u64 LE header length, JSON header
 * padded with spaces to a multiple of 8 bytes, then the data in header order.
 *
 * @param tensors name → tensor, written in iteration order
 * @param metadata optional `__metadata__` (string values only)
 * @throws {SafetensorsError} when a tensor's byte length does not match its shape
 *
 * @example
 * ```ts
 * import { readSafetensors } from "./safetensors.ts";
 * const bytes = writeSafetensors({
 *   b: { dtype: "F32", shape: [2], data: new Uint8Array(new Float32Array([1, 2]).buffer) },
 * }, { format: "pt" });
 * readSafetensors(bytes, "mem").tensors.get("b")?.shape; // [2]
 * ```
 */
export function writeSafetensors(
  tensors: Record<string, SafetensorsTensor> | Map<string, SafetensorsTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") {
      throw new SafetensorsError(`tensor name '__metadata__' is reserved`);
    }
    const expected = t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_ITEMSIZE[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new SafetensorsError(
        `tensor '${name}': ${t.dtype}${
          JSON.stringify(t.shape)
        } needs ${expected} bytes, found ${t.data.byteLength}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLen = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + headerLen + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + headerLen);
  let pos = 8 + headerLen;
  for (const [, t] of entries) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}
