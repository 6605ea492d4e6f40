/**
 * The safetensors format (huggingface/safetensors): an unsigned 64-bit
 * little-endian header length `N`, `N` bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`,
 * then the tensor bytes, with offsets relative to the end of the header.
 * This module holds the format's types and errors, the strict header parser
 * and reading a file already in memory; `safetensors_reader.ts` reads one
 * tensor at a time from disk, `safetensors_writer.ts` writes files.
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
export function checkHeaderLength(headerLen: bigint, fileSize: number, source: string): number {
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
 * declare const headerBytes: Uint8Array;
 * declare const fileSize: number;
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
