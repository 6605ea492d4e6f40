/**
 * Copies of unaligned f32 payloads carved out of shared slabs. A NATS
 * payload sits wherever the message landed in the client's read buffer, so
 * most are not 4-byte aligned and cannot be viewed as a `Float32Array`:
 * they are copied. One `ArrayBuffer` per frame (48 KiB for 16 tokens of
 * 768) is external memory to V8, and its churn drove a full mark-compact
 * about every 0.6 s at 25 000 tokens/s (docs/performance-history.md); copies carved
 * from 4 MiB slabs allocate one buffer per ~80 frames instead.
 *
 * A fresh `ArrayBuffer` is fresh pages, which the kernel faults in and
 * zeroes on first write: a 48 KiB copy into a new slab cost 20 µs, the same
 * copy into memory already touched 0.4 µs. So a caller that knows when a
 * copy is dead (`serve`'s pipeline, once a batch is encoded, evaluated and
 * its evidence copied) hands it back with {@linkcode releaseAlignedCopy},
 * and a slab whose copies have all come back is reused (a pool of
 * {@linkcode POOL_SLABS}). Copies never handed back only cost reuse: their
 * slab is left to the garbage collector once no copy in it is referenced.
 *
 * @module
 */

/** Bytes per slab; payloads above a quarter of it get a buffer of their own. */
export const SLAB_BYTES = 4 * 1024 * 1024;

/** Free slabs kept for reuse, at most. */
export const POOL_SLABS = 4;

interface Slab {
  buffer: ArrayBuffer;
  /** Copies carved from it and not handed back. */
  out: number;
  /** No longer carved from: reusable once `out` reaches 0. */
  retired: boolean;
}

/** The slab being carved (a new object each time a buffer is taken, from the pool or new). */
let current: Slab = { buffer: new ArrayBuffer(0), out: 0, retired: false };
let used = 0;
/**
 * Each copy's slab, until the copy is handed back. Keyed by the copy, not the
 * buffer: a copy from a buffer's earlier use handed back again finds nothing
 * (its entry went with its first hand-back), so it cannot count against the
 * copies of the buffer's current use. Weak: a copy never handed back keeps
 * its slab alive only as long as the copy lives.
 */
const owners = new WeakMap<Float32Array, Slab>();
const pool: ArrayBuffer[] = [];
const stats = { allocated: 0, reused: 0 };

/**
 * Slabs allocated and taken from the pool since start-up.
 *
 * @example
 * ```ts
 * import { slabStats } from "./aligned_copy.ts";
 * slabStats().reused; // 0 until every copy of a slab is handed back
 * ```
 */
export function slabStats(): { allocated: number; reused: number } {
  return { ...stats };
}

function free(s: Slab): void {
  if (pool.length < POOL_SLABS) pool.push(s.buffer);
}

/**
 * Hand back a copy made by {@linkcode alignedF32Copy} that nothing will read
 * again (each copy once; a second hand-back, or anything else, is ignored).
 * Its memory is reused once every copy of its slab is back.
 *
 * @example
 * ```ts
 * import { alignedF32Copy, releaseAlignedCopy } from "./aligned_copy.ts";
 * const copy = alignedF32Copy(new Uint8Array(9).subarray(1));
 * releaseAlignedCopy(copy); // copy must not be read after this
 * ```
 */
export function releaseAlignedCopy(copy: Float32Array): void {
  const s = owners.get(copy);
  if (!s) return;
  owners.delete(copy);
  if (--s.out === 0 && s.retired) free(s);
}

/** Retire the current slab and take the next one, from the pool when it has one. */
function nextSlab(): Slab {
  current.retired = true;
  if (current.out === 0 && current.buffer.byteLength > 0) free(current);
  const reused = pool.pop();
  if (reused) stats.reused++;
  else stats.allocated++;
  return { buffer: reused ?? new ArrayBuffer(SLAB_BYTES), out: 0, retired: false };
}

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
  const out = slabF32(n / 4);
  new Uint8Array(out.buffer, out.byteOffset, n).set(bytes);
  return out;
}

/**
 * `length` f32 values of room carved from the current slab (contents
 * undefined: a reused slab holds earlier frames' values), handed back with
 * {@linkcode releaseAlignedCopy} like a copy. Widened f16/bf16 payloads are
 * written here.
 *
 * @example
 * ```ts
 * import { releaseAlignedCopy, slabF32 } from "./aligned_copy.ts";
 * const room = slabF32(768);
 * room.fill(0);
 * releaseAlignedCopy(room);
 * ```
 */
export function slabF32(length: number): Float32Array {
  const n = length * 4;
  if (n === 0) return new Float32Array(0); // an end-of-request marker: nothing to carve
  if (n > SLAB_BYTES / 4) return new Float32Array(length);
  const size = (n + 7) & ~7;
  if (used + size > current.buffer.byteLength) {
    current = nextSlab();
    used = 0;
  }
  const out = new Float32Array(current.buffer, used, length);
  used += size;
  current.out++;
  owners.set(out, current);
  return out;
}
