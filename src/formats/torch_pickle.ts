/**
 * Reader for PyTorch checkpoints in the zip format `torch.save` writes since
 * torch 1.6: `<prefix>/data.pkl` (the pickled object), `<prefix>/data/<key>`
 * (one entry per storage, raw little-endian bytes), `<prefix>/byteorder` and
 * `<prefix>/version`.
 *
 * `data.pkl` is read by a RESTRICTED pickle machine: it implements only the
 * opcodes torch state dicts use and resolves only an allow-list of globals
 * (tensor rebuilding, storage types, dtypes, `OrderedDict`), each to a
 * built-in TypeScript implementation. Nothing named by the file is ever
 * looked up or run; any other global (e.g. `os.system`, `builtins.eval`)
 * or an opcode that builds or calls something (e.g. `NEWOBJ`, `INST`) stops
 * the read with a {@linkcode TorchPickleRefusedError} before anything else
 * happens (pickle_machine.ts).
 *
 * @module
 */

import { readZip, type ZipArchive, ZipError } from "./zip.ts";
import { toValue, unpickle } from "./pickle_machine.ts";
import type { Storages } from "./pickle_values.ts";
import {
  ITEMSIZE,
  TorchCheckpointError,
  type TorchTensor,
  type TorchValue,
} from "./torch_values.ts";

export { ALLOWED_GLOBALS } from "./pickle_opcodes.ts";
export {
  TorchCheckpointError,
  type TorchDict,
  type TorchDtype,
  TorchPickleRefusedError,
  type TorchTensor,
  type TorchValue,
} from "./torch_values.ts";

/** `\x80\x02\x8a\x0a` + the magic number 0x1950a86a20f9469cfc6c that legacy torch.save writes first. */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20];

/**
 * Read a `torch.save` zip checkpoint whose top-level object is a dict (a
 * state dict or a nested checkpoint) without executing anything from it.
 *
 * @param bytes the whole `.pt` file
 * @param source the file name, used in error messages
 * @returns the top-level dict, in file order
 * @throws {TorchPickleRefusedError} when the pickle asks for a global or opcode outside the allow-list
 * @throws {TorchCheckpointError} for a legacy, damaged or big-endian file, a non-contiguous
 * tensor, or a top level that is not a dict
 *
 * @example
 * ```ts
 * const sd = await readTorchCheckpoint(await Deno.readFile("6.pt"), "6.pt");
 * const w = sd.get("encoder.weight"); // { kind: "tensor", dtype: "float32", shape: [n, d], data }
 * ```
 */
export async function readTorchCheckpoint(
  bytes: Uint8Array,
  source: string,
): Promise<Map<string, TorchValue>> {
  if (LEGACY_MAGIC.every((b, i) => bytes[i] === b) || (bytes[0] === 0x80 && bytes[1] <= 5)) {
    throw new TorchCheckpointError(
      `${source}: this is a legacy (pre-1.6, non-zip) torch.save file; latentwatch reads only the zip format. ` +
        `Re-save it with torch >= 1.6: torch.save(torch.load(path, weights_only=True), path)`,
    );
  }
  let zip: ZipArchive;
  try {
    zip = readZip(bytes, source);
  } catch (e) {
    if (e instanceof ZipError && /not a ZIP archive/.test(e.message)) {
      throw new TorchCheckpointError(
        `${source}: not a PyTorch zip checkpoint (expected a zip archive holding <name>/data.pkl, as torch.save writes since torch 1.6); ` +
          `if it is a legacy or tar-format torch file, re-save it with torch >= 1.6`,
        { cause: e },
      );
    }
    throw new TorchCheckpointError((e as Error).message, { cause: e });
  }
  const pklName = [...zip.entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n)) ??
    [...zip.entries.keys()].find((n) => n.endsWith("data.pkl"));
  if (!pklName) {
    throw new TorchCheckpointError(
      `${source}: expected a <prefix>/data.pkl entry as torch.save writes, found ${
        [...zip.entries.keys()].slice(0, 10).join(", ") || "an empty archive"
      }`,
    );
  }
  const prefix = pklName.slice(0, -"data.pkl".length);
  const read = async (name: string) => {
    try {
      return await zip.read(name);
    } catch (e) {
      throw new TorchCheckpointError((e as Error).message, { cause: e });
    }
  };
  if (zip.entries.has(`${prefix}byteorder`)) {
    const order = new TextDecoder().decode(await read(`${prefix}byteorder`)).trim();
    if (order !== "little") {
      throw new TorchCheckpointError(
        `${source}: byteorder is ${
          JSON.stringify(order)
        }, expected "little"; re-save the checkpoint on a little-endian machine`,
      );
    }
  }
  if (zip.entries.has(`${prefix}version`)) {
    const version = new TextDecoder().decode(await read(`${prefix}version`)).trim();
    if (!/^\d+$/.test(version)) {
      throw new TorchCheckpointError(
        `${source}: ${prefix}version holds ${JSON.stringify(version)}, expected an integer`,
      );
    }
  }
  // The unpickler is synchronous, so read every storage entry first (stored
  // entries are views, so this holds no second copy of the weights).
  const storageBytes = new Map<string, Uint8Array>();
  for (const name of zip.entries.keys()) {
    if (name.startsWith(`${prefix}data/`) && !name.endsWith("/")) {
      storageBytes.set(name.slice(`${prefix}data/`.length), await read(name));
    }
  }
  const storages: Storages = {
    get(ref) {
      const b = storageBytes.get(ref.key);
      if (!b) {
        throw new TorchCheckpointError(
          `${source}: the pickle references storage ${ref.key}, but the archive has no entry ${prefix}data/${ref.key}`,
        );
      }
      const want = ref.numel * ITEMSIZE[ref.dtype];
      if (b.byteLength < want) {
        throw new TorchCheckpointError(
          `${source}: storage ${prefix}data/${ref.key} should hold ${ref.numel} ${ref.dtype} values (${want} bytes), found ${b.byteLength} bytes`,
        );
      }
      return b;
    },
  };
  const obj = unpickle(await read(pklName), source, storages);
  const value = toValue(obj, source);
  if (!(value instanceof Map)) {
    throw new TorchCheckpointError(
      `${source}: expected the checkpoint to hold a dict (a state dict), found ${
        Array.isArray(value)
          ? "a list"
          : typeof value === "object" && value
          ? "a tensor"
          : typeof value
      }`,
    );
  }
  return value;
}

/**
 * Read a checkpoint file from disk; see {@linkcode readTorchCheckpoint}.
 *
 * @example
 * ```ts
 * const sd = await loadTorchCheckpoint("ae.pt");
 * ```
 */
export async function loadTorchCheckpoint(path: string): Promise<Map<string, TorchValue>> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new TorchCheckpointError(`${path}: cannot read the checkpoint: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return await readTorchCheckpoint(bytes, path);
}

/**
 * Narrow a {@linkcode TorchValue} to a tensor.
 *
 * @example
 * ```ts
 * declare const sd: Map<string, TorchValue>;
 * if (isTorchTensor(sd.get("pre_bias"))) console.log("a tensor");
 * ```
 */
export function isTorchTensor(v: TorchValue | undefined): v is TorchTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) &&
    v.kind === "tensor";
}
