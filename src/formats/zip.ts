/**
 * Minimal ZIP reader (PKWARE APPNOTE 6.3) for the archives SAE checkpoints
 * come in: NumPy `.npz` files and PyTorch `torch.save` checkpoints. Entries
 * are located through the central directory (zip64 included, since large
 * checkpoints exceed 4 GiB), stored entries are returned as zero-copy views
 * into the archive, deflated entries are inflated with the runtime's
 * `DecompressionStream("deflate-raw")`, and every entry's CRC-32 is checked
 * so a damaged download fails loudly instead of loading wrong weights.
 *
 * @module
 */

/** A ZIP archive or entry that cannot be read. */
export class ZipError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ZipError";
  }
}

/** One archive member, as listed in the central directory. */
export interface ZipEntry {
  /** Path inside the archive, `/`-separated. */
  name: string;
  /** 0 (stored) or 8 (deflate). */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  /** Offset of the local file header. */
  localOffset: number;
}

/** A parsed archive: entries by name, in central-directory order. */
export interface ZipArchive {
  entries: Map<string, ZipEntry>;
  /**
   * The decompressed, CRC-checked bytes of an entry. Stored entries are
   * views into the archive bytes (not copies).
   *
   * @throws {ZipError} when the entry is missing, damaged, or uses an
   * unsupported compression method
   */
  read(name: string): Promise<Uint8Array>;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

let crcTable: Uint32Array | undefined;

/**
 * CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) as ZIP stores it.
 *
 * @example
 * ```ts
 * crc32(new TextEncoder().encode("123456789")); // 0xcbf43926
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function u64(view: DataView, at: number, what: string, source: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ZipError(
      `${source}: zip64 ${what} ${v} is larger than any file this reader can hold`,
    );
  }
  return Number(v);
}

/**
 * Parse a ZIP archive's central directory. Entry data are read lazily by
 * {@linkcode ZipArchive.read}.
 *
 * @param bytes the whole archive
 * @param source the file name, used in error messages
 * @throws {ZipError} when the file is not a ZIP archive, is truncated, or its
 * directory is inconsistent
 *
 * @example
 * ```ts
 * const zip = readZip(await Deno.readFile("params.npz"), "params.npz");
 * const wEnc = await zip.read("W_enc.npy");
 * ```
 */
export function readZip(bytes: Uint8Array, source: string): ZipArchive {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.byteLength;
  // The end-of-central-directory record is 22 bytes plus a comment of up to
  // 65535 bytes, so search backwards over at most that window.
  let eocd = -1;
  for (let i = len - 22; i >= Math.max(0, len - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    const isZipStart = len >= 4 && view.getUint32(0, true) === SIG_LOCAL;
    throw new ZipError(
      isZipStart
        ? `${source}: truncated ZIP archive: expected an end-of-central-directory record, found none in ${len} bytes (the download may be incomplete)`
        : `${source}: not a ZIP archive: expected an end-of-central-directory record (PK\\x05\\x06), found none in ${len} bytes`,
    );
  }
  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  // zip64: any saturated field means the real values live in the zip64 EOCD,
  // located by the 20-byte locator just before the classic EOCD.
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) {
      throw new ZipError(
        `${source}: corrupt ZIP archive: the directory needs zip64 but no zip64 locator precedes the end record`,
      );
    }
    const z = u64(view, loc + 8, "end record offset", source);
    if (z + 56 > len || view.getUint32(z, true) !== SIG_ZIP64_EOCD) {
      throw new ZipError(
        `${source}: corrupt ZIP archive: expected a zip64 end record at offset ${z}, found none`,
      );
    }
    count = u64(view, z + 32, "entry count", source);
    cdSize = u64(view, z + 40, "directory size", source);
    cdOffset = u64(view, z + 48, "directory offset", source);
  }
  if (cdOffset + cdSize > len) {
    throw new ZipError(
      `${source}: truncated ZIP archive: the central directory spans bytes ${cdOffset}..${
        cdOffset + cdSize
      }, but the file has ${len} bytes`,
    );
  }
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder();
  let p = cdOffset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cdOffset + cdSize || view.getUint32(p, true) !== SIG_CENTRAL) {
      throw new ZipError(
        `${source}: corrupt ZIP central directory: expected entry ${
          n + 1
        } of ${count} at offset ${p}, found ${
          p + 4 <= len ? `0x${view.getUint32(p, true).toString(16)}` : "end of file"
        }`,
      );
    }
    const flags = view.getUint16(p + 8, true);
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > len) {
      throw new ZipError(`${source}: truncated ZIP central directory at entry ${n + 1}`);
    }
    const name = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    if (flags & 1) {
      throw new ZipError(`${source}: entry ${name} is encrypted, which is not supported`);
    }
    // zip64 extended information (tag 1): 8-byte values present only for
    // the fields that are saturated, in the order size, compressed, offset.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const tag = view.getUint16(e, true);
      const sz = view.getUint16(e + 2, true);
      if (tag === 1) {
        let q = e + 4;
        const next = (what: string) => {
          if (q + 8 > e + 4 + sz) {
            throw new ZipError(`${source}: entry ${name}: zip64 extra field lacks the ${what}`);
          }
          const v = u64(view, q, what, source);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next("size");
        if (compressedSize === 0xffffffff) compressedSize = next("compressed size");
        if (localOffset === 0xffffffff) localOffset = next("local header offset");
      }
      e += 4 + sz;
    }
    entries.set(name, { name, method, compressedSize, size, crc32: crc, localOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }

  const read = async (name: string): Promise<Uint8Array> => {
    const entry = entries.get(name);
    if (!entry) {
      throw new ZipError(
        `${source}: no entry ${JSON.stringify(name)} in the archive; it holds ${
          [...entries.keys()].slice(0, 20).join(", ") || "nothing"
        }`,
      );
    }
    const at = entry.localOffset;
    if (at + 30 > len || view.getUint32(at, true) !== SIG_LOCAL) {
      throw new ZipError(
        `${source}: corrupt ZIP archive: entry ${name}: expected a local file header at offset ${at}, found ${
          at + 30 > len ? "end of file" : "other bytes"
        }`,
      );
    }
    // The local header's own name/extra lengths may differ from the central
    // directory's (torch pads data with a local-only extra field).
    const start = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
    const end = start + entry.compressedSize;
    if (end > len) {
      throw new ZipError(
        `${source}: truncated ZIP archive: entry ${name} needs bytes ${start}..${end}, but the file has ${len} bytes`,
      );
    }
    const raw = bytes.subarray(start, end);
    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) {
        throw new ZipError(
          `${source}: corrupt ZIP entry ${name}: stored entry has compressed size ${entry.compressedSize} but size ${entry.size}`,
        );
      }
      data = raw;
    } else if (entry.method === 8) {
      try {
        data = await inflateRaw(raw);
      } catch (err) {
        throw new ZipError(
          `${source}: corrupt ZIP entry ${name}: deflate stream is invalid (${
            (err as Error).message
          })`,
          { cause: err },
        );
      }
      if (data.byteLength !== entry.size) {
        throw new ZipError(
          `${source}: corrupt ZIP entry ${name}: expected ${entry.size} bytes after inflating, found ${data.byteLength}`,
        );
      }
    } else {
      throw new ZipError(
        `${source}: entry ${name} uses compression method ${entry.method}; expected 0 (stored) or 8 (deflate)`,
      );
    }
    const found = crc32(data);
    if (found !== entry.crc32) {
      throw new ZipError(
        `${source}: corrupt ZIP entry ${name}: CRC-32 mismatch, expected 0x${
          entry.crc32.toString(16).padStart(8, "0")
        }, found 0x${found.toString(16).padStart(8, "0")}`,
      );
    }
    return data;
  };
  return { entries, read };
}

async function inflateRaw(raw: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Write a ZIP archive of stored (uncompressed) entries, as `numpy.savez`
 * does. Used by tests and fixture writers; zip64 is not emitted.
 *
 * @example
 * ```ts
 * const zip = writeZip({ "a.txt": new TextEncoder().encode("hi") });
 * ```
 */
export function writeZip(files: Record<string, Uint8Array>): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(files)) {
    const nameBytes = enc.encode(name);
    const crc = crc32(data);
    const local = new Uint8Array(30 + nameBytes.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, 0x0800, true); // UTF-8 names
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.byteLength, true);
    lv.setUint32(22, data.byteLength, true);
    lv.setUint16(26, nameBytes.length, true);
    local.set(nameBytes, 30);
    const central = new Uint8Array(46 + nameBytes.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(8, 0x0800, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.byteLength, true);
    cv.setUint32(24, data.byteLength, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    central.set(nameBytes, 46);
    locals.push(local, data);
    centrals.push(central);
    offset += local.byteLength + data.byteLength;
  }
  const cdSize = centrals.reduce((a, c) => a + c.byteLength, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, centrals.length, true);
  ev.setUint16(10, centrals.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...centrals, eocd]) {
    out.set(part, p);
    p += part.byteLength;
  }
  return out;
}
