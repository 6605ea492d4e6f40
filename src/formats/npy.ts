/**
 * Reader and writer for NumPy `.npy` arrays of floats: magic `\x93NUMPY`,
 * version byte pair, header length (u16 for 1.0, u32 for 2.0/3.0), a Python
 * dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (T, D), }`
 * padded with spaces and a newline to a 64-byte boundary, then the data.
 *
 * @module
 */

import { f16ToF32, f32ToF16 } from "../core/dtype.ts";

/** Element types accepted on read (`f64` is rounded to f32). */
export type NpyDtype = "f32" | "f16" | "f64";

/** A decoded array, always as f32 in C (row-major) order. */
export interface NpyArray {
  shape: number[];
  data: Float32Array;
  /** Element type the file stored. */
  dtype: NpyDtype;
}

/** A `.npy` file that cannot be read, or an array that cannot be written. */
export class NpyError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NpyError";
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCR: Record<string, { dtype: NpyDtype; size: number }> = {
  "<f4": { dtype: "f32", size: 4 },
  "<f2": { dtype: "f16", size: 2 },
  "<f8": { dtype: "f64", size: 8 },
};

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

/**
 * Parse the subset of Python literals numpy writes in headers: dicts,
 * tuples, quoted strings, integers, True/False/None. Rejects anything else,
 * so the header is never evaluated as code.
 */
function parsePyLiteral(text: string): PyValue {
  let i = 0;
  const skip = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const fail = (what: string): never => {
    throw new Error(`${what} at offset ${i} in ${JSON.stringify(text)}`);
  };
  const value = (): PyValue => {
    skip();
    const c = text[i];
    if (c === "{") {
      i++;
      const out: Record<string, PyValue> = {};
      for (;;) {
        skip();
        if (text[i] === "}") {
          i++;
          return out;
        }
        const key = value();
        if (typeof key !== "string") fail("expected a string key");
        skip();
        if (text[i++] !== ":") fail("expected ':'");
        out[key as string] = value();
        skip();
        if (text[i] === ",") i++;
        else if (text[i] !== "}") fail("expected ',' or '}'");
      }
    }
    if (c === "(" || c === "[") {
      const close = c === "(" ? ")" : "]";
      i++;
      const out: PyValue[] = [];
      for (;;) {
        skip();
        if (text[i] === close) {
          i++;
          return out;
        }
        out.push(value());
        skip();
        if (text[i] === ",") i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail("unterminated string");
      const s = text.slice(i + 1, end);
      i = end + 1;
      return s;
    }
    const m = /^(-?\d+L?|True|False|None)/.exec(text.slice(i));
    if (!m) return fail("unexpected token");
    i += m[0].length;
    if (m[0] === "True") return true;
    if (m[0] === "False") return false;
    if (m[0] === "None") return null;
    return Number(m[0].replace("L", ""));
  };
  const v = value();
  skip();
  if (i !== text.length) fail("trailing characters");
  return v;
}

/**
 * Decode a `.npy` file holding a little-endian float array (`<f4`, `<f2`, or
 * `<f8`, which is rounded to f32). Fortran-ordered arrays are transposed to C
 * order.
 *
 * @param bytes the whole file
 * @param source the file name, used in error messages
 * @throws {NpyError} on a bad magic, version, header, dtype or data length
 *
 * @example
 * ```ts
 * const { shape, data } = readNpy(await Deno.readFile("acts.npy"), "acts.npy");
 * // shape [T, d_in], data row-major Float32Array
 * ```
 */
export function readNpy(bytes: Uint8Array, source: string): NpyArray {
  if (bytes.byteLength < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new NpyError(`${source}: not a .npy file: expected the magic bytes \\x93NUMPY`);
  }
  const major = bytes[6];
  const minor = bytes[7];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerStart: number;
  let headerLen: number;
  if (major === 1) {
    headerStart = 10;
    headerLen = view.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.byteLength < 12) throw new NpyError(`${source}: truncated .npy header`);
    headerStart = 12;
    headerLen = view.getUint32(8, true);
  } else {
    throw new NpyError(
      `${source}: unsupported .npy version ${major}.${minor}, expected 1.0, 2.0 or 3.0`,
    );
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > bytes.byteLength) {
    throw new NpyError(
      `${source}: header length ${headerLen} runs past the end of the file (${bytes.byteLength} bytes)`,
    );
  }
  // Version 3.0 only differs from 2.0 by allowing UTF-8 in the header.
  const text = new TextDecoder(major === 3 ? "utf-8" : "latin1")
    .decode(bytes.subarray(headerStart, dataStart));
  let header: PyValue;
  try {
    header = parsePyLiteral(text);
  } catch (e) {
    throw new NpyError(`${source}: malformed .npy header: ${(e as Error).message}`, { cause: e });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new NpyError(`${source}: .npy header must be a dict, found ${JSON.stringify(header)}`);
  }
  const { descr, fortran_order: fortran, shape } = header;
  if (typeof descr !== "string" || !Object.hasOwn(DESCR, descr)) {
    throw new NpyError(
      `${source}: unsupported dtype ${JSON.stringify(descr)}, expected '<f4', '<f2' or '<f8'`,
    );
  }
  if (typeof fortran !== "boolean") {
    throw new NpyError(`${source}: fortran_order must be True or False, found ${fortran}`);
  }
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === "number" && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new NpyError(
      `${source}: shape must be a tuple of non-negative integers, found ${JSON.stringify(shape)}`,
    );
  }
  const dims = shape as number[];
  const { dtype, size } = DESCR[descr];
  const count = dims.reduce((a, b) => a * b, 1);
  const found = bytes.byteLength - dataStart;
  if (found !== count * size) {
    throw new NpyError(
      `${source}: shape (${dims.join(", ")}) of ${descr} needs ${
        count * size
      } data bytes, found ${found}`,
    );
  }
  // Copy into an aligned buffer: the data offset is only guaranteed aligned
  // for files numpy wrote, and the caller owns the result.
  const raw = new Uint8Array(found);
  raw.set(bytes.subarray(dataStart)); // not slice(): on a Node Buffer that is a view
  let data: Float32Array;
  if (dtype === "f32") data = new Float32Array(raw.buffer, 0, count);
  else if (dtype === "f16") data = f16ToF32(new Uint16Array(raw.buffer, 0, count));
  else data = Float32Array.from(new Float64Array(raw.buffer, 0, count));
  return { shape: dims, data: fortran ? fortranToC(data, dims) : data, dtype };
}

/** Reorder column-major (first axis fastest) data into row-major order. */
function fortranToC(src: Float32Array, shape: number[]): Float32Array {
  const n = shape.length;
  if (n < 2) return src;
  const out = new Float32Array(src.length);
  // Fortran strides: stride[0] = 1, stride[d] = stride[d-1] * shape[d-1].
  const stride = new Array<number>(n);
  stride[0] = 1;
  for (let d = 1; d < n; d++) stride[d] = stride[d - 1] * shape[d - 1];
  const idx = new Array<number>(n).fill(0);
  let from = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = src[from];
    // Odometer over the C-order index, last axis fastest.
    for (let d = n - 1; d >= 0; d--) {
      idx[d]++;
      from += stride[d];
      if (idx[d] < shape[d]) break;
      from -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Encode a C-order float array as a version 1.0 `.npy` file, exactly as
 * `numpy.save` does (header padded to 64 bytes). `f16` rounds to nearest even.
 *
 * @throws {NpyError} when `data.length` does not match `shape`
 *
 * @example
 * ```ts
 * await Deno.writeFile("acts.npy", writeNpy(new Float32Array(8), [2, 4], "f32"));
 * ```
 */
export function writeNpy(data: Float32Array, shape: number[], dtype: "f32" | "f16"): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new NpyError(
      `writeNpy: shape (${shape.join(", ")}) holds ${count} values, found ${data.length}`,
    );
  }
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${
    dtype === "f32" ? "<f4" : "<f2"
  }', 'fortran_order': False, 'shape': ${tuple}, }`;
  // magic(6) + version(2) + u16 length(2) + header + '\n' ≡ 0 (mod 64)
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  if (total - 10 > 0xffff) throw new NpyError(`writeNpy: header too long for version 1.0`);
  header = header.padEnd(total - 10 - 1, " ") + "\n";
  const body = dtype === "f32"
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(f32ToF16(data).buffer);
  const out = new Uint8Array(total + body.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, total - 10, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(body, total);
  return out;
}
