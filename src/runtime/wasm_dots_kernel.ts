/**
 * The dot kernel of `wasm_dots.ts` as WebAssembly bytes, written here (no
 * toolchain, nothing fetched): `dots(pairs, n, stride, out)` in SIMD (f32x4,
 * four accumulators of four lanes) over rows held as f32 or as bf16, and the
 * test for a matrix that can be held as bf16.
 *
 * The module imports one shared memory (`env.mem`, at most 4 GiB) and exports
 * `dots`. Each dot is summed in f32: lane-wise over four accumulators, then
 * `(a0 + a1) + (a2 + a3)`, then the lanes `(0 + 1) + (2 + 3)`.
 *
 * @module
 */

import {
  BLOCK,
  BR,
  BR_IF,
  END,
  F32_ADD,
  F32_STORE,
  F32X4_ADD,
  F32X4_MUL,
  get,
  I32,
  I32_ADD,
  I32_CONST,
  I32_GE_U,
  I32_LOAD,
  I32_LT_U,
  I32_SHL,
  I32_SHR_U,
  I32X4_EXTEND_HIGH_I16X8_U,
  I32X4_EXTEND_LOW_I16X8_U,
  I32X4_SHL,
  lane,
  LOOP,
  MODULE_HEADER,
  name,
  section,
  set,
  sleb,
  uleb,
  V128,
  V128_CONST_ZERO,
  V128_LOAD,
  vec,
  VOID,
} from "./wasm_asm.ts";

/** 4 GiB: the most a 32-bit WebAssembly memory can address. */
export const MAX_PAGES = 65536;

/**
 * How the matrix's rows are held: `f32`, or `bf16` (the upper half of each
 * f32, half the bytes to read) for a matrix whose every value is a bf16.
 */
export type RowFormat = "f32" | "bf16";

/**
 * Whether every value of `m` is exactly a bf16 (its f32 bits' lower half zero).
 *
 * @example
 * ```ts
 * import { isBf16Exact } from "./wasm_dots_kernel.ts";
 * isBf16Exact(new Float32Array([1, -0.5, 3])); // true
 * isBf16Exact(new Float32Array([1 + 2 ** -20])); // false
 * ```
 */
export function isBf16Exact(m: Float32Array): boolean {
  const bits = new Uint32Array(m.buffer, m.byteOffset, m.length);
  for (let i = 0; i < bits.length; i++) if ((bits[i] & 0xffff) !== 0) return false;
  return true;
}

/** The kernel's export: the dots of the first `n` pairs (byte addresses) into `out`. */
export type DotsFn = (pairs: number, n: number, stride: number, out: number) => void;

/**
 * The kernel's load of accumulator `k`'s four weights at element offset `i`
 * of the row at `w` (`i` in bytes of f32). A bf16 row holds them in the
 * upper halves: widened in registers, `(u16 → u32) << 16` is the f32 exactly,
 * so both formats give the same bits.
 */
function weightLoad(format: RowFormat, w: number, i: number, k: number): number[] {
  if (format === "f32") return [...get(w), ...get(i), I32_ADD, ...V128_LOAD, 4, ...uleb(16 * k)];
  return [
    ...get(w),
    ...get(i),
    I32_CONST,
    1,
    I32_SHR_U,
    I32_ADD,
    ...V128_LOAD,
    4,
    ...uleb(16 * (k >> 1)),
    ...(k % 2 === 0 ? I32X4_EXTEND_LOW_I16X8_U : I32X4_EXTEND_HIGH_I16X8_U),
    I32_CONST,
    16,
    ...I32X4_SHL,
  ];
}

/**
 * `dots(pairs, n, stride, out)`: for c < n, with `x = pairs[2c]` and
 * `w = pairs[2c + 1]` (byte addresses of two rows of `stride` values, a
 * multiple of 16: x in f32, w in `format`), `out[c] = Σ_i x[i]·w[i]`.
 *
 * @example
 * ```ts
 * import { dotsModule, type DotsFn, MAX_PAGES } from "./wasm_dots_kernel.ts";
 * const mem = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
 * const module = new WebAssembly.Module(dotsModule("f32") as BufferSource);
 * const dots = new WebAssembly.Instance(module, { env: { mem } }).exports.dots as DotsFn;
 * const f32 = new Float32Array(mem.buffer);
 * f32.fill(1, 0, 16); // x: row of 16 floats at byte 0
 * f32.fill(2, 16, 32); // w: row of 16 floats at byte 64
 * new Uint32Array(mem.buffer).set([0, 64], 32); // the pair at byte 128
 * dots(128, 1, 16, 192);
 * f32[48]; // 32
 * ```
 */
export function dotsModule(format: RowFormat): Uint8Array {
  // params 0..3: pairs, n, stride, out; locals: 4 c, 5 x, 6 w, 7 i, 8 rowBytes, 9..12 acc
  const [PAIRS, N, STRIDE, OUT, C, X, W, I, ROW] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const ACC = [9, 10, 11, 12];
  const pairAt = [...get(PAIRS), ...get(C), I32_CONST, 3, I32_SHL, I32_ADD];
  const body: number[] = [
    ...get(STRIDE),
    I32_CONST,
    2,
    I32_SHL,
    ...set(ROW),
    I32_CONST,
    0,
    ...set(C),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(C),
    ...get(N),
    I32_GE_U,
    BR_IF,
    1,
    ...pairAt,
    I32_LOAD,
    2,
    0,
    ...set(X),
    ...pairAt,
    I32_LOAD,
    2,
    4,
    ...set(W),
    ...ACC.flatMap((a) => [...V128_CONST_ZERO, ...set(a)]),
    I32_CONST,
    0,
    ...set(I),
    LOOP,
    VOID,
    ...ACC.flatMap((a, k) => [
      ...get(a),
      ...get(X),
      ...get(I),
      I32_ADD,
      ...V128_LOAD,
      4,
      ...uleb(16 * k),
      ...weightLoad(format, W, I, k),
      ...F32X4_MUL,
      ...F32X4_ADD,
      ...set(a),
    ]),
    ...get(I),
    I32_CONST,
    ...sleb(64),
    I32_ADD,
    ...set(I),
    ...get(I),
    ...get(ROW),
    I32_LT_U,
    BR_IF,
    0,
    END,
    // (a0 + a1) + (a2 + a3), then lanes (0 + 1) + (2 + 3)
    ...get(ACC[0]),
    ...get(ACC[1]),
    ...F32X4_ADD,
    ...get(ACC[2]),
    ...get(ACC[3]),
    ...F32X4_ADD,
    ...F32X4_ADD,
    ...set(ACC[0]),
    ...get(OUT),
    ...get(C),
    I32_CONST,
    2,
    I32_SHL,
    I32_ADD,
    ...get(ACC[0]),
    ...lane(0),
    ...get(ACC[0]),
    ...lane(1),
    F32_ADD,
    ...get(ACC[0]),
    ...lane(2),
    ...get(ACC[0]),
    ...lane(3),
    F32_ADD,
    F32_ADD,
    F32_STORE,
    2,
    0,
    ...get(C),
    I32_CONST,
    1,
    I32_ADD,
    ...set(C),
    BR,
    0,
    END,
    END,
    END,
  ];
  const locals = vec([[5, I32], [4, V128]]);
  const code = [...locals, ...body];
  return new Uint8Array([
    ...MODULE_HEADER,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32]]), 0]])),
    // a shared memory of at most 4 GiB (flags 3: shared, with a maximum)
    ...section(
      2,
      vec([[...name("env"), ...name("mem"), 0x02, 0x03, ...uleb(1), ...uleb(MAX_PAGES)]]),
    ),
    ...section(3, vec([[0]])),
    ...section(7, vec([[...name("dots"), 0x00, 0]])),
    ...section(10, vec([[...uleb(code.length), ...code]])),
  ]);
}
