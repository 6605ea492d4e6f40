/**
 * Reading a safetensors file from disk tensor by tensor: only the header is
 * read up front; each tensor's byte range is read and widened to f32 chunk by
 * chunk straight into its destination, laid out by a {@linkcode TensorLayout}.
 *
 * @module
 */
import { bf16ToF32, f16ToF32 } from "../core/dtype.ts";
import {
  checkHeaderLength,
  parseSafetensorsHeader,
  SAFETENSORS_ITEMSIZE,
  type SafetensorsDtype,
  type SafetensorsEntry,
  SafetensorsError,
} from "./safetensors.ts";
import { layoutShape, placeRows, rowGeometry, type TensorLayout } from "./tensor_layout.ts";

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
