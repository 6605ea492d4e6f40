/**
 * Typed arrays whose first element sits on a cache line, for the native
 * kernels' 512-bit loads and stores. A large `ArrayBuffer` comes from `mmap`
 * 16 bytes into a page (the allocator's header), a smaller one from the heap
 * at any multiple of 16: every 64-byte load of such an array spans two cache
 * lines. The watched product (768 × 256 f32 weights, one token) took 9.6 µs
 * at 16 bytes past a line and 4.8 on one (docs/performance-history.md, thirtieth
 * sitting).
 *
 * @module
 */
import { addressOf as addressOfView, adviseHugePages, hugePageBytes } from "./huge_pages.ts";

/** Bytes to which {@linkcode alignedArray} aligns: one cache line, one 512-bit register. */
export const KERNEL_ALIGNMENT = 64;

/** The typed arrays the native kernels read and write. */
type KernelArray = Float32Array | Int32Array | Uint8Array | Int8Array | Uint16Array;

/** A constructor of one of them. */
interface KernelArrayConstructor<T extends KernelArray> {
  new (length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** The largest huge page {@linkcode alignedArray} pads an array to start on. */
export const MAX_HUGE_ALIGNMENT = 2 * 1024 * 1024;

/** How {@linkcode alignedArray} places an array. */
export interface AlignedArrayOptions {
  /**
   * Start on a huge page and ask for huge pages (`huge_pages.ts`): for
   * arrays the kernels read whole on every batch, of at least one huge page
   * (smaller ones are placed as without it). Costs up to one huge page of
   * address space past the array, never written. Where huge pages are
   * larger than {@linkcode MAX_HUGE_ALIGNMENT} (arm64 with 64 KiB pages:
   * 512 MiB) the array is placed as without it.
   */
  hugePages?: boolean;
}

/**
 * A zeroed `length`-element array of `kind` starting on a
 * {@linkcode KERNEL_ALIGNMENT}-byte boundary (a huge page's, with
 * `hugePages`): a view into a buffer up to that many bytes longer. Where the
 * address cannot be read (no FFI permission), an array as `new kind(length)`
 * gives; the kernels then read it unaligned, as they can.
 *
 * @example
 * ```ts
 * import { alignedArray } from "./aligned.ts";
 * const w = alignedArray(Float32Array, 768 * 64);
 * w.length; // 49152
 * ```
 */
export function alignedArray<T extends KernelArray>(
  kind: KernelArrayConstructor<T>,
  length: number,
  opts: AlignedArrayOptions = {},
): T {
  const per = kind.BYTES_PER_ELEMENT;
  if (length === 0) return new kind(0);
  const page = opts.hugePages === true ? hugePageBytes() : 0;
  const huge = page > 0 && page <= MAX_HUGE_ALIGNMENT && length * per >= page;
  const alignment = huge ? page : KERNEL_ALIGNMENT;
  const raw = new kind(length + alignment / per);
  const address = addressOf(raw);
  if (address === null) return raw.subarray(0, length) as T;
  const skip = ((alignment - address % alignment) % alignment) / per;
  // an element-aligned buffer (all are) is a whole number of elements from the boundary
  const array = raw.subarray(skip, skip + length) as T;
  // before anything writes it: touched pages keep their 4 KiB
  if (huge) adviseHugePages(array);
  return array;
}

/** Whether `a`'s first element sits on a {@linkcode KERNEL_ALIGNMENT}-byte boundary (null: unknown). */
export function isAligned(a: KernelArray): boolean | null {
  const address = addressOf(a);
  return address === null ? null : address % KERNEL_ALIGNMENT === 0;
}

/** The address of `a`'s first element, modulo 2⁵³ (null where FFI is not permitted). */
function addressOf(a: KernelArray): number | null {
  const address = addressOfView(a);
  return address === null ? null : Number(BigInt.asUintN(53, address));
}
