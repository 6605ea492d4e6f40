/**
 * Transparent huge pages for the kernels' large arrays: `madvise(2)` with
 * `MADV_HUGEPAGE` on the whole 2 MiB pages inside an array, before it is
 * first written, so the kernel backs them with 2 MiB pages where it can.
 *
 * Why: the encoders read 19–75 MB of weights per batch (the packed int8
 * product, the exact pass's rows), in 4 KiB pages 4,750–18,000 of them,
 * more than the level-2 TLB holds, and each process gets its own scatter
 * of physical pages over the level-3 cache's sets. Many hosts (this one
 * included) give huge pages only to memory that asks (`madvise` mode).
 * Measured in docs/performance.md (thirty-fifth sitting).
 *
 * Linux only, and only with FFI permission; elsewhere, or where the advice
 * fails, nothing changes and the arrays work as before.
 *
 * @module
 */

/** The huge page size these helpers align to (x86-64 and most arm64 kernels). */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
/** `MADV_HUGEPAGE` from `<sys/mman.h>` (Linux, every architecture). */
const MADV_HUGEPAGE = 14;

type Libc = Deno.DynamicLibrary<{
  madvise: { parameters: ["pointer", "usize", "i32"]; result: "i32" };
}>;

let libc: Libc | null | undefined;
/** What this process has asked for so far ({@linkcode hugePageAdvice}). */
const advice = { arrays: 0, bytes: 0 };

/**
 * The arrays and bytes this process has asked huge pages for: how a caller
 * (a test, a start-up log) sees that the kernels' arrays got the advice.
 *
 * @example
 * ```ts
 * import { hugePageAdvice } from "./huge_pages.ts";
 * hugePageAdvice().bytes; // 0 before any large kernel array
 * ```
 */
export function hugePageAdvice(): { arrays: number; bytes: number } {
  return { ...advice };
}

/** libc's madvise, opened once (null where it cannot be: not Linux, no FFI permission). */
function openLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") return libc;
  try {
    libc = Deno.dlopen("libc.so.6", {
      madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
    });
  } catch {
    // no FFI permission, or a libc by another name (musl): 4 KiB pages, as before
  }
  return libc;
}

/** The address of `view`'s first byte, or null where it cannot be read. */
export function addressOf(view: ArrayBufferView): bigint | null {
  try {
    const p = Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>);
    return p === null ? null : BigInt(Deno.UnsafePointer.value(p));
  } catch {
    return null;
  }
}

/**
 * Ask for huge pages on the whole {@linkcode HUGE_PAGE_BYTES} pages that lie
 * inside `view`; the bytes asked for (0: none whole, or the advice could not
 * be given). Call it before the array is first written: memory already
 * touched keeps its small pages until the kernel's background collapse.
 *
 * @example
 * ```ts
 * import { adviseHugePages, HUGE_PAGE_BYTES } from "./huge_pages.ts";
 * const w = new Uint8Array(8 * HUGE_PAGE_BYTES);
 * adviseHugePages(w); // 6 or 7 × 2 MiB on Linux (the array need not start on a huge page)
 * ```
 */
export function adviseHugePages(view: ArrayBufferView): number {
  const address = addressOf(view);
  const lib = address === null ? null : openLibc();
  if (address === null || lib === null) return 0;
  const huge = BigInt(HUGE_PAGE_BYTES);
  const start = (address + huge - 1n) / huge * huge;
  const end = (address + BigInt(view.byteLength)) / huge * huge;
  if (end <= start) return 0;
  const rc = lib.symbols.madvise(Deno.UnsafePointer.create(start), end - start, MADV_HUGEPAGE);
  if (rc !== 0) return 0;
  advice.arrays++;
  advice.bytes += Number(end - start);
  return Number(end - start);
}
