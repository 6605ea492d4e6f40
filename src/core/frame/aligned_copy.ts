/**
 * Copies of unaligned f32 payloads carved out of shared slabs. A NATS
 * payload sits wherever the message landed in the client's read buffer, so
 * most are not 4-byte aligned and cannot be viewed as a `Float32Array`:
 * they are copied. One `ArrayBuffer` per frame (48 KiB for 16 tokens of
 * 768) is external memory to V8, and its churn drove a full mark-compact
 * about every 0.6 s at 25 000 tokens/s (docs/performance.md); copies carved
 * from 4 MiB slabs allocate one buffer per ~80 frames instead. A slab is
 * freed once no copy in it is referenced.
 *
 * @module
 */

/** Bytes per slab; payloads above a quarter of it get a buffer of their own. */
export const SLAB_BYTES = 4 * 1024 * 1024;

let slab = new ArrayBuffer(0);
let used = 0;

/**
 * A 4-byte aligned `Float32Array` copy of little-endian f32 `bytes` (whose
 * length is a multiple of 4), carved from the current slab.
 *
 * @example
 * ```ts
 * import { alignedF32Copy } from "./aligned_copy.ts";
 * const raw = new Uint8Array([0, 0, 0, 0, 0x80, 0x3f]).subarray(2); // offset 2: unaligned
 * alignedF32Copy(raw); // Float32Array [1]
 * ```
 */
export function alignedF32Copy(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength;
  if (n % 4 !== 0) {
    throw new RangeError(`alignedF32Copy: expected a multiple of 4 bytes, found ${n}`);
  }
  if (n > SLAB_BYTES / 4) {
    const own = new Float32Array(n / 4);
    new Uint8Array(own.buffer).set(bytes);
    return own;
  }
  const size = (n + 7) & ~7;
  if (used + size > slab.byteLength) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  new Uint8Array(slab, used, n).set(bytes);
  const out = new Float32Array(slab, used, n / 4);
  used += size;
  return out;
}
