/**
 * The few pieces of the WebAssembly binary format that latentwatch's
 * hand-written modules (`wasm_dots_kernel.ts`, `wasm_scan.ts`) are assembled from:
 * LEB128 integers, sections, vectors, names and the opcodes they use
 * (WebAssembly core 2.0 with SIMD). No toolchain, nothing fetched.
 *
 * @module
 */

/**
 * Unsigned LEB128.
 *
 * @example
 * ```ts
 * uleb(300); // [0xac, 0x02]
 * ```
 */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/**
 * Signed LEB128 (i32.const immediates) of a non-negative number.
 *
 * @example
 * ```ts
 * sleb(64); // [0xc0, 0x00]: 0x40 alone would read as −64
 * ```
 */
export function sleb(n: number): number[] {
  const out = uleb(n);
  // a last byte with bit 6 set would read as negative: add a 0 byte
  if (out[out.length - 1] & 0x40) {
    out[out.length - 1] |= 0x80;
    out.push(0);
  }
  return out;
}

/** A section: id, byte length, body. */
export const section = (
  id: number,
  body: number[],
): number[] => [id, ...uleb(body.length), ...body];
/** A vector: count, then the items. */
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
/** A name: byte length, then UTF-8. */
export const name = (s: string): number[] => [...uleb(s.length), ...new TextEncoder().encode(s)];
/** The module header: magic and version 1. */
export const MODULE_HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

// Types and instructions.
export const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
export const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22, I32_CONST = 0x41;
export const I32_ADD = 0x6a, I32_SHL = 0x74, I32_SHR_U = 0x76, I32_AND = 0x71;
export const I32_GE_U = 0x4f, I32_LT_U = 0x49;
export const I32_LOAD = 0x28, I32_STORE = 0x36, F32_STORE = 0x38, F32_ADD = 0x92;
export const BLOCK = 0x02, LOOP = 0x03, IF = 0x04, BR = 0x0c, BR_IF = 0x0d, END = 0x0b;
export const VOID = 0x40;
export const SIMD = 0xfd;
export const V128_LOAD = [SIMD, ...uleb(0)];
export const V128_CONST_ZERO = [SIMD, ...uleb(12), ...new Array(16).fill(0)];
export const F32X4_SPLAT = [SIMD, ...uleb(19)];
export const F32X4_GT = [SIMD, ...uleb(68)];
export const I32X4_BITMASK = [SIMD, ...uleb(164)];
export const I32X4_EXTEND_LOW_I16X8_U = [SIMD, ...uleb(169)];
export const I32X4_EXTEND_HIGH_I16X8_U = [SIMD, ...uleb(170)];
export const I32X4_SHL = [SIMD, ...uleb(171)];
export const F32X4_ADD = [SIMD, ...uleb(228)];
export const F32X4_MUL = [SIMD, ...uleb(230)];
export const F32X4_CONVERT_I32X4_S = [SIMD, ...uleb(250)];
/** f32x4.extract_lane i. */
export const lane = (i: number): number[] => [SIMD, ...uleb(31), i];
/** local.get l. */
export const get = (l: number): number[] => [LOCAL_GET, l];
/** local.set l. */
export const set = (l: number): number[] => [LOCAL_SET, l];
