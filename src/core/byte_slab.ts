/**
 * Short-lived bytes (a verdict, a decode step's copied payload)
 * written into views of a shared slab instead of a buffer each. Pure.
 *
 * Why: in this Deno every new `ArrayBuffer` costs about a microsecond, even
 * an empty one (measured: 16 bytes 1.1 µs, 4 KiB 3.9 µs), and
 * `TextEncoder.encode` and `Uint8Array.prototype.slice` make one per call;
 * `encodeInto` or `set` into a view of a 16 KiB slab costs a tenth of that.
 * Larger slabs measured worse: each fresh one is cold memory, and past
 * 128 KiB glibc maps it afresh (docs/performance-history.md, twenty-first sitting).
 *
 * @module
 */

const utf8 = new TextEncoder();

/** Bytes of each slab by default. */
export const SLAB_BYTES = 16 * 1024;

/**
 * Writes bytes into views of a slab, the next slab once the current one has
 * no room left. A slab is never written twice: each view keeps its bytes for
 * as long as it lives, and keeps its slab alive (so hold the views of
 * short-lived messages only). What may take more than a quarter of a slab
 * gets a buffer of its own.
 *
 * The views share their `buffer`: read them through their offset and
 * length, and never transfer or detach it.
 *
 * @example
 * ```ts
 * import { ByteSlab } from "./byte_slab.ts";
 * const slab = new ByteSlab();
 * const a = slab.utf8('{"v":1}'); // Uint8Array of 7 bytes
 * const b = slab.utf8("é"); // [0xc3, 0xa9], after a's bytes in the same slab
 * const c = slab.copy(new Uint8Array([1, 2, 3])); // a copy: the source may change now
 * ```
 */
export class ByteSlab {
  readonly #size: number;
  #slab = new Uint8Array(0);
  #at = 0;

  /** `size`: bytes of each slab (default {@linkcode SLAB_BYTES}). */
  constructor(size = SLAB_BYTES) {
    if (!Number.isSafeInteger(size) || size < 64) {
      throw new RangeError(`slab size: expected an integer ≥ 64 bytes, found ${size}`);
    }
    this.#size = size;
  }

  /** `s` as UTF-8 (lone surrogates as U+FFFD, as `TextEncoder` writes them). */
  utf8(s: string): Uint8Array {
    // each UTF-16 code unit takes at most 3 bytes of UTF-8
    if (!this.#room(3 * s.length)) return utf8.encode(s);
    const slab = this.#slab;
    const at = this.#at;
    // ASCII is its own UTF-8: copied here, without a runtime call (what a verdict is)
    let i = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      slab[at + i] = c;
    }
    if (i === s.length) return this.#take(i);
    const { written } = utf8.encodeInto(s.slice(i), slab.subarray(at + i));
    return this.#take(i + written);
  }

  /** A copy of `bytes`. */
  copy(bytes: Uint8Array): Uint8Array {
    if (!this.#room(bytes.length)) return bytes.slice();
    this.#slab.set(bytes, this.#at);
    return this.#take(bytes.length);
  }

  /** Whether `most` bytes go in a slab; a new slab when the current one lacks the room. */
  #room(most: number): boolean {
    if (most > this.#size / 4) return false;
    if (this.#at + most > this.#slab.length) {
      this.#slab = new Uint8Array(this.#size);
      this.#at = 0;
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#slab.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
}
