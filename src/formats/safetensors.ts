/**
 * Reader and writer for the safetensors format (huggingface/safetensors):
 * an unsigned 64-bit little-endian header length `N`, `N` bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`,
 * then the tensor bytes, with offsets relative to the end of the header.
 *
 * The reader is strict in the same places the upstream Rust reader is, so a
 * file that loads here also loads in Python, and a damaged file fails with a
 * message naming the file, the tensor and what was wrong.
 *
 * @module
 */

import { bf16ToF32, f16ToF32, toF32 } from "../core/dtype.ts";

/** Tensor element types latentwatch reads from safetensors files. */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "F64" | "I32" | "I64";

/** Bytes per element of each {@linkcode SafetensorsDtype}. */
export const SAFETENSORS_ITEMSIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I32: 4,
  I64: 8,
};

/** One tensor: its element type, shape and little-endian bytes. */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** A view into the file bytes (not a copy) when read. */
  data: Uint8Array;
}

/** A parsed safetensors file. */
export interface SafetensorsFile {
  /** Tensors in header order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The optional string-to-string `__metadata__` map. */
  metadata: Record<string, string> | null;
}

/** A safetensors file that cannot be read or a tensor set that cannot be written. */
export class SafetensorsError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SafetensorsError";
  }
}

/** Upstream (safetensors `MAX_HEADER_SIZE`) refuses headers above 100 MB. */
const MAX_HEADER_SIZE = 100_000_000;

function isDtype(v: unknown): v is SafetensorsDtype {
  return typeof v === "string" && Object.hasOwn(SAFETENSORS_ITEMSIZE, v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parse a safetensors file. Tensor data are views into `bytes`.
 *
 * @param bytes the whole file
 * @param source the file name, used in error messages
 * @throws {SafetensorsError} on any malformed header, dtype, shape or offset
 *
 * @example
 * ```ts
 * const file = readSafetensors(await Deno.readFile("sae_weights.safetensors"), "sae_weights.safetensors");
 * file.tensors.get("W_enc")?.shape; // [d_in, d_sae]
 * ```
 */
export function readSafetensors(bytes: Uint8Array, source: string): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new SafetensorsError(
      `${source}: not a safetensors file: expected at least 8 bytes for the header length, found ${bytes.byteLength}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = checkHeaderLength(view.getBigUint64(0, true), bytes.byteLength, source);
  const { entries, metadata } = parseSafetensorsHeader(
    bytes.subarray(8, 8 + n),
    bytes.byteLength - 8 - n,
    source,
  );
  const dataStart = 8 + n;
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, e] of entries) {
    tensors.set(name, {
      dtype: e.dtype,
      shape: e.shape,
      data: bytes.subarray(dataStart + e.begin, dataStart + e.end),
    });
  }
  return { tensors, metadata };
}

/** Validate the u64 header length against the limit and the file size; returns it as a number. */
function checkHeaderLength(headerLen: bigint, fileSize: number, source: string): number {
  if (headerLen > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(
      `${source}: header length ${headerLen} exceeds the limit of ${MAX_HEADER_SIZE} bytes`,
    );
  }
  const n = Number(headerLen);
  if (8 + n > fileSize) {
    throw new SafetensorsError(
      `${source}: header length ${n} runs past the end of the file (${fileSize} bytes, so at most ${
        fileSize - 8
      })`,
    );
  }
  return n;
}

/** One header entry: element type, shape and byte range relative to the data section. */
export interface SafetensorsEntry {
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parse and validate a safetensors JSON header against the size of the data
 * section that follows it (offsets in range, byte counts matching shapes,
 * tensors tiling the data exactly).
 *
 * @param headerBytes the `N` header bytes (after the u64 length)
 * @param dataLen bytes in the file after the header
 * @param source the file name, used in error messages
 * @throws {SafetensorsError} on any malformed header, dtype, shape or offset
 *
 * @example
 * ```ts
 * const { entries } = parseSafetensorsHeader(headerBytes, fileSize - 8 - headerBytes.length, "w.safetensors");
 * entries.get("W_enc")?.shape;
 * ```
 */
export function parseSafetensorsHeader(
  headerBytes: Uint8Array,
  dataLen: number,
  source: string,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> | null } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new SafetensorsError(`${source}: header is not valid UTF-8 JSON: ${String(e)}`, {
      cause: e,
    });
  }
  if (!isRecord(header)) {
    throw new SafetensorsError(`${source}: header must be a JSON object, found ${typeof header}`);
  }

  const entries = new Map<string, SafetensorsEntry>();
  const spans: { name: string; begin: number; end: number }[] = [];
  let metadata: Record<string, string> | null = null;

  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(entry, source);
      continue;
    }
    const where = `${source}: tensor '${name}'`;
    if (!isRecord(entry)) throw new SafetensorsError(`${where}: entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isDtype(dtype)) {
      throw new SafetensorsError(
        `${where}: unsupported dtype ${JSON.stringify(dtype)}, expected one of ${
          Object.keys(SAFETENSORS_ITEMSIZE).join(", ")
        }`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new SafetensorsError(
        `${where}: shape must be an array of non-negative integers, found ${JSON.stringify(shape)}`,
      );
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new SafetensorsError(
        `${where}: data_offsets must be [begin, end] non-negative integers, found ${
          JSON.stringify(offsets)
        }`,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) {
      throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] has begin > end`);
    }
    if (end > dataLen) {
      throw new SafetensorsError(
        `${where}: data_offsets [${begin}, ${end}] out of range: the data section has ${dataLen} bytes (is the file truncated?)`,
      );
    }
    const expected = (shape as number[]).reduce((a, b) => a * b, 1) * SAFETENSORS_ITEMSIZE[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `${where}: ${dtype}${
          JSON.stringify(shape)
        } needs ${expected} bytes, found data_offsets [${begin}, ${end}] (${end - begin} bytes)`,
      );
    }
    spans.push({ name, begin, end });
    entries.set(name, { dtype, shape: shape as number[], begin, end });
  }

  // Upstream requires the tensors to tile the data section exactly: no
  // overlap (aliasing would make in-place edits surprising), no holes.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    if (s.begin < cursor) {
      const prev = spans[i - 1];
      throw new SafetensorsError(
        `${source}: tensor '${s.name}' data_offsets [${s.begin}, ${s.end}] overlaps tensor '${prev.name}' [${prev.begin}, ${prev.end}]`,
      );
    }
    if (s.begin > cursor) {
      throw new SafetensorsError(
        `${source}: tensor '${s.name}' starts at ${s.begin}, expected ${cursor}: the data section has a hole`,
      );
    }
    cursor = s.end;
  }
  if (cursor !== dataLen) {
    throw new SafetensorsError(
      `${source}: the tensors cover ${cursor} bytes but the data section has ${dataLen}`,
    );
  }
  return { entries, metadata };
}

function parseMetadata(entry: unknown, source: string): Record<string, string> {
  if (!isRecord(entry)) {
    throw new SafetensorsError(`${source}: __metadata__ must be an object of strings`);
  }
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        `${source}: __metadata__['${k}'] must be a string, found ${JSON.stringify(v)}`,
      );
    }
  }
  return entry as Record<string, string>;
}

/** Copy `data` when its offset is not a multiple of `align`, so a typed-array view is legal. */
function aligned(data: Uint8Array, align: number): Uint8Array {
  if (data.byteOffset % align === 0) return data;
  // An explicit copy: on a Node Buffer, slice() is a view that keeps the bad offset.
  const copy = new Uint8Array(data.byteLength);
  copy.set(data);
  return copy;
}

/**
 * Convert a tensor to f32. F32, F16 and BF16 widen exactly; F64 is rounded to
 * nearest f32; integers convert to the nearest f32. Aligned F32 data is
 * returned as a view, not a copy.
 *
 * @example
 * ```ts
 * const t = { dtype: "BF16" as const, shape: [1], data: new Uint8Array([0x80, 0x3f]) };
 * tensorToF32(t); // Float32Array [1]
 * ```
 */
export function tensorToF32(tensor: SafetensorsTensor): Float32Array {
  const { dtype, data } = tensor;
  const count = data.byteLength / SAFETENSORS_ITEMSIZE[dtype];
  switch (dtype) {
    case "F32":
      return toF32(data, "f32");
    case "F16": {
      const d = aligned(data, 2);
      return f16ToF32(new Uint16Array(d.buffer, d.byteOffset, count));
    }
    case "BF16": {
      const d = aligned(data, 2);
      return bf16ToF32(new Uint16Array(d.buffer, d.byteOffset, count));
    }
    case "F64": {
      const d = aligned(data, 8);
      return Float32Array.from(new Float64Array(d.buffer, d.byteOffset, count));
    }
    case "I32": {
      const d = aligned(data, 4);
      return Float32Array.from(new Int32Array(d.buffer, d.byteOffset, count));
    }
    case "I64": {
      const d = aligned(data, 8);
      const src = new BigInt64Array(d.buffer, d.byteOffset, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(src[i]);
      return out;
    }
  }
}

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

/**
 * How a tensor is placed into its f32 destination:
 * - `"as-stored"`: same shape and order;
 * - `"transposed"`: a 2-D `[R, C]` tensor becomes `[C, R]` (nn.Linear weights);
 * - `{ select }`: a 3-D `[A, B, C]` tensor becomes `[A, C]` = `t[:, select, :]`
 *   (one output layer of a cross-layer transcoder decoder).
 */
export type TensorLayout = "as-stored" | "transposed" | { select: number };

/** Rows of the stored tensor a layout walks over, and the length of each row. */
function rowGeometry(shape: number[], layout: TensorLayout): { rows: number; rowLen: number } {
  if (layout === "as-stored") {
    // One "row" per element block; the split only matters for chunking.
    const n = shape.reduce((a, b) => a * b, 1);
    const rowLen = shape.length > 1 ? shape[shape.length - 1] : Math.max(n, 1);
    return { rows: rowLen === 0 ? 0 : n / rowLen, rowLen };
  }
  if (layout === "transposed") {
    if (shape.length !== 2) {
      throw new SafetensorsError(`a transposed read needs a 2-D tensor, found shape [${shape}]`);
    }
    return { rows: shape[0], rowLen: shape[1] };
  }
  if (shape.length !== 3 || layout.select < 0 || layout.select >= shape[1]) {
    throw new SafetensorsError(
      `selecting index ${layout.select} of axis 1 needs a 3-D tensor with more than ${layout.select} entries on that axis, found shape [${shape}]`,
    );
  }
  return { rows: shape[0], rowLen: shape[1] * shape[2] };
}

/** Shape of the destination of `layout` applied to a tensor of `shape`. */
export function layoutShape(shape: number[], layout: TensorLayout): number[] {
  if (layout === "as-stored") return shape;
  if (layout === "transposed") return [shape[1], shape[0]];
  return [shape[0], shape[2]];
}

/**
 * Place widened rows `r0 … r0 + n − 1` of a stored tensor (given in `src`,
 * `n × rowLen` values) into `out` according to `layout`.
 */
function placeRows(
  out: Float32Array,
  src: Float32Array,
  r0: number,
  n: number,
  shape: number[],
  layout: TensorLayout,
): void {
  if (layout === "as-stored") {
    const rowLen = rowGeometry(shape, layout).rowLen;
    out.set(src.subarray(0, n * rowLen), r0 * rowLen);
    return;
  }
  if (layout === "transposed") {
    const [rows, cols] = shape;
    // out[c, r] = src[r, c]: walk the destination rows so writes stay sequential per c.
    for (let c = 0; c < cols; c++) {
      const base = c * rows + r0;
      for (let r = 0; r < n; r++) out[base + r] = src[r * cols + c];
    }
    return;
  }
  const inner = shape[2];
  const rowLen = shape[1] * inner;
  const off = layout.select * inner;
  for (let r = 0; r < n; r++) {
    out.set(src.subarray(r * rowLen + off, r * rowLen + off + inner), (r0 + r) * inner);
  }
}

/**
 * Apply `layout` to an f32 tensor already in memory (used for formats read
 * whole, such as `.npz`).
 *
 * @example
 * ```ts
 * rearrange(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], "transposed"); // [1, 4, 2, 5, 3, 6]
 * ```
 */
export function rearrange(
  values: Float32Array,
  shape: number[],
  layout: TensorLayout,
): Float32Array {
  if (layout === "as-stored") return values;
  const { rows } = rowGeometry(shape, layout);
  const out = new Float32Array(layoutShape(shape, layout).reduce((a, b) => a * b, 1));
  placeRows(out, values, 0, rows, shape, layout);
  return out;
}

/** Bytes of stored data converted per step; bounds the extra memory of a read. */
const CHUNK_BYTES = 16 << 20;

/** Widen `count` elements of `dtype` from `bytes` (offset 0 of its own buffer) into `out`. */
function widenInto(
  bytes: Uint8Array,
  dtype: SafetensorsDtype,
  count: number,
  out: Float32Array<ArrayBuffer>,
) {
  switch (dtype) {
    case "F32":
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      return;
    case "F16":
      f16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count), out);
      return;
    case "BF16":
      bf16ToF32(new Uint16Array(bytes.buffer, bytes.byteOffset, count), out);
      return;
    case "F64": {
      const src = new Float64Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = src[i];
      return;
    }
    case "I32": {
      const src = new Int32Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = src[i];
      return;
    }
    case "I64": {
      const src = new BigInt64Array(bytes.buffer, bytes.byteOffset, count);
      for (let i = 0; i < count; i++) out[i] = Number(src[i]);
      return;
    }
  }
}

/** Read exactly `dest.byteLength` bytes at `pos`, or fail naming the file. */
async function readAt(file: Deno.FsFile, pos: number, dest: Uint8Array, source: string) {
  await file.seek(pos, Deno.SeekMode.Start);
  let done = 0;
  while (done < dest.byteLength) {
    const n = await file.read(dest.subarray(done));
    if (n === null) {
      throw new SafetensorsError(
        `${source}: unexpected end of file at byte ${pos + done}, expected ${
          dest.byteLength - done
        } more bytes (is the file truncated?)`,
      );
    }
    done += n;
  }
}

/**
 * A safetensors file opened for reading tensor by tensor: only the header is
 * read up front, and {@linkcode SafetensorsReader.readF32} reads one tensor's
 * byte range from disk, widening f16/bf16 chunk by chunk straight into the
 * f32 destination. A load therefore never holds the file bytes and the f32
 * weights at once; the extra memory is one chunk (16 MiB).
 *
 * @example
 * ```ts
 * const reader = await SafetensorsReader.open("params.safetensors");
 * try {
 *   const wEnc = await reader.readF32("w_enc"); // [d_in, d_sae]
 * } finally {
 *   reader.close();
 * }
 * ```
 */
export class SafetensorsReader {
  /** Header entries, in header order. */
  readonly entries: Map<string, SafetensorsEntry>;
  readonly metadata: Record<string, string> | null;
  readonly path: string;
  #file: Deno.FsFile;
  #dataStart: number;

  private constructor(
    path: string,
    file: Deno.FsFile,
    dataStart: number,
    parsed: ReturnType<typeof parseSafetensorsHeader>,
  ) {
    this.path = path;
    this.#file = file;
    this.#dataStart = dataStart;
    this.entries = parsed.entries;
    this.metadata = parsed.metadata;
  }

  /**
   * Open `path` and validate its header against the file size (so a
   * truncated file fails here, naming the first tensor that runs past the end).
   *
   * @throws {SafetensorsError} for a malformed header or a truncated file
   * @throws {Deno.errors.NotFound} when the file does not exist
   */
  static async open(path: string): Promise<SafetensorsReader> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      if (size < 8) {
        throw new SafetensorsError(
          `${path}: not a safetensors file: expected at least 8 bytes for the header length, found ${size}`,
        );
      }
      const lenBytes = new Uint8Array(8);
      await readAt(file, 0, lenBytes, path);
      const n = checkHeaderLength(new DataView(lenBytes.buffer).getBigUint64(0, true), size, path);
      const header = new Uint8Array(n);
      await readAt(file, 8, header, path);
      const parsed = parseSafetensorsHeader(header, size - 8 - n, path);
      return new SafetensorsReader(path, file, 8 + n, parsed);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /**
   * Read tensor `name` as f32, placed by `layout`, into a fresh array (or
   * `out`, which must have the right length).
   *
   * @param onChunk called with the number of stored bytes consumed after each chunk
   * @throws {SafetensorsError} for an unknown tensor, a bad layout or a short read
   */
  async readF32(
    name: string,
    layout: TensorLayout = "as-stored",
    onChunk?: (bytes: number) => void,
    out?: Float32Array<ArrayBuffer>,
  ): Promise<Float32Array<ArrayBuffer>> {
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(`${this.path}: no tensor '${name}'`);
    const size = SAFETENSORS_ITEMSIZE[e.dtype];
    const { rows, rowLen } = rowGeometry(e.shape, layout);
    const total = layoutShape(e.shape, layout).reduce((a, b) => a * b, 1);
    out ??= new Float32Array(total);
    if (out.length !== total) {
      throw new SafetensorsError(
        `${this.path}: tensor '${name}' needs ${total} f32 values, the destination has ${out.length}`,
      );
    }
    if (rows === 0 || rowLen === 0) return out;
    const rowBytes = rowLen * size;
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
    const pos0 = this.#dataStart + e.begin;
    if (layout === "as-stored" && e.dtype === "F32") {
      // Same bytes as the destination: read straight into it, no scratch at all.
      const dest = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      for (let r = 0; r < rows; r += perChunk) {
        const n = Math.min(perChunk, rows - r);
        await readAt(
          this.#file,
          pos0 + r * rowBytes,
          dest.subarray(r * rowBytes, (r + n) * rowBytes),
          this.path,
        );
        onChunk?.(n * rowBytes);
      }
      return out;
    }
    // One chunk of stored bytes, plus (for layouts that move values) one chunk of f32.
    const scratch = new Uint8Array(Math.min(rows, perChunk) * rowBytes);
    const widened = layout === "as-stored"
      ? null
      : new Float32Array(Math.min(rows, perChunk) * rowLen);
    for (let r = 0; r < rows; r += perChunk) {
      const n = Math.min(perChunk, rows - r);
      const bytes = scratch.subarray(0, n * rowBytes);
      await readAt(this.#file, pos0 + r * rowBytes, bytes, this.path);
      if (widened === null) {
        widenInto(bytes, e.dtype, n * rowLen, out.subarray(r * rowLen, (r + n) * rowLen));
      } else {
        widenInto(bytes, e.dtype, n * rowLen, widened);
        placeRows(out, widened, r, n, e.shape, layout);
      }
      onChunk?.(n * rowBytes);
    }
    return out;
  }

  /** Close the file. */
  close(): void {
    this.#file.close();
  }
}
