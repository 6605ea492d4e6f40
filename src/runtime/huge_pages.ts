/**
 * Transparent huge pages for the kernels' large arrays, through libc's
 * `madvise(2)`: `MADV_HUGEPAGE` on the whole huge pages inside an array
 * before it is first written (the kernel then backs them with huge pages as
 * they fault in), and `MADV_COLLAPSE` after it is written (memory that was
 * already touched, e.g. heap memory that `calloc` reused and zeroed, is
 * collapsed into huge pages there and then).
 *
 * Why: the encoders read 19–75 MB of weights per batch (the packed int8
 * product, the exact pass's rows), in 4 KiB pages 4,750–18,000 of them,
 * more than the level-2 TLB holds. Many hosts (this one included) give huge
 * pages only to memory that asks (`madvise` mode). Measured in
 * docs/performance-history.md (thirty-fifth sitting).
 *
 * Linux only, and only with FFI permission; elsewhere, or where the kernel
 * refuses (no transparent huge pages, a kernel before 6.1 for the
 * collapse), nothing changes and the arrays work as before.
 *
 * @module
 */

/** `MADV_HUGEPAGE` and `MADV_COLLAPSE` from `<linux/mman.h>` (every architecture). */
const MADV_HUGEPAGE = 14;
const MADV_COLLAPSE = 25;
/** The huge page size where the kernel does not say (x86-64's, and arm64's with 4 KiB pages). */
const DEFAULT_HUGE_PAGE_BYTES = 2 * 1024 * 1024;

type Libc = Deno.DynamicLibrary<{
  madvise: { parameters: ["pointer", "usize", "i32"]; result: "i32" };
}>;

let libc: Libc | null | undefined;
let pageBytes: number | undefined;
/** What this process has asked for so far ({@linkcode hugePageAdvice}). */
const advice = { arrays: 0, bytes: 0, collapsedBytes: 0 };

/**
 * The kernel's transparent huge page mode (`always`, `madvise` or `never`),
 * or null where it has none to read (not Linux, no transparent huge pages).
 *
 * @example
 * ```ts
 * import { transparentHugePageMode } from "./huge_pages.ts";
 * transparentHugePageMode(); // "madvise" on most distributions' kernels
 * ```
 */
export function transparentHugePageMode(): string | null {
  try {
    const text = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/enabled");
    return /\[(\w+)\]/.exec(text)?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * Whether this kernel can collapse written memory into huge pages
 * (`MADV_COLLAPSE`, Linux 6.1 and later).
 *
 * @example
 * ```ts
 * import { kernelCanCollapse } from "./huge_pages.ts";
 * kernelCanCollapse(); // true on Linux 6.1 and later
 * ```
 */
export function kernelCanCollapse(): boolean {
  if (Deno.build.os !== "linux") return false;
  const [major, minor] = Deno.osRelease().split(".").map((v) => parseInt(v, 10));
  return major > 6 || (major === 6 && minor >= 1);
}

/**
 * The size of one transparent huge page here (the kernel's
 * `hpage_pmd_size`; 2 MiB where it does not say): 2 MiB on x86-64, 512 MiB
 * on arm64 kernels with 64 KiB pages.
 *
 * @example
 * ```ts
 * import { hugePageBytes } from "./huge_pages.ts";
 * hugePageBytes(); // 2097152 on x86-64
 * ```
 */
export function hugePageBytes(): number {
  if (pageBytes !== undefined) return pageBytes;
  pageBytes = DEFAULT_HUGE_PAGE_BYTES;
  try {
    const text = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    const size = Number(text.trim());
    if (Number.isSafeInteger(size) && size > 0) pageBytes = size;
  } catch {
    // no sysfs file to read (not Linux, a sandbox): the usual size
  }
  return pageBytes;
}

/**
 * The arrays and bytes this process has asked huge pages for, and the bytes
 * collapsed into them after writing: how a test sees that the kernels'
 * arrays got the advice.
 *
 * @example
 * ```ts
 * import { hugePageAdvice } from "./huge_pages.ts";
 * hugePageAdvice().bytes; // 0 before any large kernel array
 * ```
 */
export function hugePageAdvice(): { arrays: number; bytes: number; collapsedBytes: number } {
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
    // no FFI permission, or a libc by another name (musl): small pages, as before
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

/** madvise(`advice`) on the whole huge pages inside `view`: the bytes it covered (0: none, or refused). */
function adviseWhole(view: ArrayBufferView, adviceCode: number): number {
  const address = addressOf(view);
  const lib = address === null ? null : openLibc();
  if (address === null || lib === null) return 0;
  const huge = BigInt(hugePageBytes());
  const start = (address + huge - 1n) / huge * huge;
  const end = (address + BigInt(view.byteLength)) / huge * huge;
  if (end <= start) return 0;
  const rc = lib.symbols.madvise(Deno.UnsafePointer.create(start), end - start, adviceCode);
  return rc === 0 ? Number(end - start) : 0;
}

/**
 * Ask for huge pages on the whole huge pages that lie inside `view`; the
 * bytes asked for (0: none whole, or the advice could not be given). Call
 * it before the array is first written: the pages then fault in huge.
 *
 * @example
 * ```ts
 * import { adviseHugePages, hugePageBytes } from "./huge_pages.ts";
 * const w = new Uint8Array(8 * hugePageBytes());
 * adviseHugePages(w); // 7 or 8 huge pages' bytes on Linux (the array need not start on one)
 * ```
 */
export function adviseHugePages(view: ArrayBufferView): number {
  const bytes = adviseWhole(view, MADV_HUGEPAGE);
  if (bytes > 0) {
    advice.arrays++;
    advice.bytes += bytes;
  }
  return bytes;
}

/**
 * Collapse the whole huge pages inside `view`, written already, into huge
 * pages now (`MADV_COLLAPSE`, Linux 6.1 on): for memory that was touched
 * before {@linkcode adviseHugePages} could take effect. The bytes collapsed
 * or already huge (0: none whole, or the kernel refused). It copies what
 * is not yet huge, about 5 ms per 2 MiB here (19 MiB of small pages: 40–46
 * ms; already huge: 0.06 ms): call it once, after loading weights, not per
 * batch.
 *
 * @example
 * ```ts
 * import { collapseHugePages, hugePageBytes } from "./huge_pages.ts";
 * const w = new Uint8Array(8 * hugePageBytes()).fill(1);
 * collapseHugePages(w); // 7 or 8 huge pages' bytes on Linux 6.1 and later
 * ```
 */
export function collapseHugePages(view: ArrayBufferView): number {
  const bytes = adviseWhole(view, MADV_COLLAPSE);
  advice.collapsedBytes += bytes;
  return bytes;
}

/**
 * Bytes of the memory areas overlapping `view` that `/proc/self/smaps`
 * shows on huge pages (0 where it cannot be read): what the kernel did
 * with the advice. It reads the whole file, a few milliseconds: for tests
 * and diagnostics, not the hot path.
 *
 * @example
 * ```ts
 * import { hugeBytesAround } from "./huge_pages.ts";
 * hugeBytesAround(new Uint8Array(16)); // 0 for a small heap array on most hosts
 * ```
 */
export function hugeBytesAround(view: ArrayBufferView): number {
  const start = addressOf(view);
  if (start === null) return 0;
  const end = start + BigInt(view.byteLength);
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/smaps");
  } catch {
    return 0;
  }
  let overlaps = false, total = 0;
  for (const line of text.split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      overlaps = BigInt(`0x${range[2]}`) > start && BigInt(`0x${range[1]}`) < end;
      continue;
    }
    const huge = /^AnonHugePages:\s+(\d+) kB/.exec(line);
    if (overlaps && huge) total += Number(huge[1]) * 1024;
  }
  return total;
}
