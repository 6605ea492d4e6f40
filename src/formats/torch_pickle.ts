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
 * looked up or run; any other global or opcode (e.g. `os.system`,
 * `builtins.eval`, `NEWOBJ`, `INST`) stops the read with a
 * {@linkcode TorchPickleRefusedError} before anything else happens.
 *
 * @module
 */

import { bf16ToF32, f16ToF32 } from "../core/dtype.ts";
import { readZip, type ZipArchive, ZipError } from "./zip.ts";

/** Tensor element types a checkpoint's storages may hold. */
export type TorchDtype =
  | "float32"
  | "float16"
  | "bfloat16"
  | "float64"
  | "int64"
  | "int32"
  | "uint8";

/**
 * A tensor from a checkpoint, widened to f32 (f16/bf16 exactly, f64 rounded);
 * integer tensors hold their values as f32 numbers (exact up to 2^24).
 */
export interface TorchTensor {
  kind: "tensor";
  /** Element type of the storage on disk. */
  dtype: TorchDtype;
  shape: number[];
  /** Row-major values; for stored f32 data aligned in the file, a view into the file bytes. */
  data: Float32Array;
}

/** A plain dict from a checkpoint; non-string keys are converted with `String()`. */
export type TorchDict = Map<string, TorchValue>;

/** What a checkpoint may contain: tensors, numbers, strings, booleans, null, lists (and tuples), dicts. */
export type TorchValue = TorchTensor | number | string | boolean | null | TorchValue[] | TorchDict;

/** A checkpoint that cannot be read (damaged, legacy, or with unsupported tensor layout). */
export class TorchCheckpointError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TorchCheckpointError";
  }
}

/**
 * The checkpoint's pickle asked for a global or opcode outside the allow-list.
 * Raised before the request is acted on: nothing from the file is executed.
 */
export class TorchPickleRefusedError extends TorchCheckpointError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TorchPickleRefusedError";
  }
}

const ITEMSIZE: Record<TorchDtype, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  uint8: 1,
};

/** Storage classes torch pickles by reference inside a storage's persistent id. */
const STORAGE_TYPES: Record<string, TorchDtype> = {
  "torch.FloatStorage": "float32",
  "torch.HalfStorage": "float16",
  "torch.BFloat16Storage": "bfloat16",
  "torch.DoubleStorage": "float64",
  "torch.LongStorage": "int64",
  "torch.IntStorage": "int32",
  // Untyped (byte) storages, as torch >= 2.0 names them.
  "torch.storage.UntypedStorage": "uint8",
  "torch.UntypedStorage": "uint8",
};

/** `torch.float32`-style dtype objects (pickled by reference, e.g. in configs). */
const DTYPE_GLOBALS = new Set([
  "float32",
  "float",
  "float16",
  "half",
  "bfloat16",
  "float64",
  "double",
  "int64",
  "long",
  "int32",
  "int",
  "int16",
  "short",
  "int8",
  "uint8",
  "bool",
]);

const CALLABLE_GLOBALS = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
]);

/** Every global the machine resolves, for error messages. */
export const ALLOWED_GLOBALS: readonly string[] = [
  ...CALLABLE_GLOBALS,
  ...Object.keys(STORAGE_TYPES),
  ...[...DTYPE_GLOBALS].map((d) => `torch.${d}`),
];

// Opcode bytes (CPython Lib/pickle.py).
const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINUNICODE: 0x58, // X
  EMPTY_LIST: 0x5d, // ]
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_TUPLE: 0x29, // )
  BINFLOAT: 0x47, // G
  PROTO: 0x80,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** Names of the opcodes the machine refuses, so the error says what was asked for. */
const REFUSED_OPCODES: Record<number, string> = {
  0x30: "POP",
  0x31: "POP_MARK",
  0x32: "DUP",
  0x46: "FLOAT",
  0x49: "INT",
  0x4c: "LONG",
  0x50: "PERSID",
  0x53: "STRING",
  0x54: "BINSTRING",
  0x55: "SHORT_BINSTRING",
  0x56: "UNICODE",
  0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES",
  0x64: "DICT",
  0x67: "GET",
  0x69: "INST (builds an instance of a named class, calling it)",
  0x6c: "LIST",
  0x6f: "OBJ (builds an instance of a class, calling it)",
  0x70: "PUT",
  0x81: "NEWOBJ (builds an instance of a class via cls.__new__)",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x8b: "LONG4",
  0x8e: "BINBYTES8",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x92: "NEWOBJ_EX (builds an instance of a class via cls.__new__)",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

// ------------------------------------------------------------ machine values

/** A Python tuple (kept apart from lists so REDUCE can insist on one). */
class PyTuple {
  constructor(readonly items: PyObj[]) {}
}
/** A dict or OrderedDict under construction. */
class PyDict {
  readonly map = new Map<string, PyObj>();
}
/** A resolved, allowed global. */
class PyGlobal {
  constructor(readonly name: string) {}
}
/** A storage named by a persistent id: `('storage', type, key, location, numel)`. */
class StorageRef {
  constructor(readonly dtype: TorchDtype, readonly key: string, readonly numel: number) {}
}
/** A `torch.<dtype>` object. */
class DtypeObj {
  constructor(readonly name: string) {}
}
type PyObj =
  | number
  | string
  | boolean
  | null
  | PyObj[]
  | PyTuple
  | PyDict
  | PyGlobal
  | StorageRef
  | DtypeObj
  | TorchTensor;

const MARK = Symbol("mark");

/** Decoded pickle plus the storages it references, resolved lazily. */
interface Storages {
  get(ref: StorageRef): Uint8Array;
}

/**
 * Run the restricted pickle machine over `pkl`.
 *
 * @param pkl the `data.pkl` bytes
 * @param source names the file in errors
 * @param storages resolves storage references to their raw bytes
 */
function unpickle(pkl: Uint8Array, source: string, storages: Storages): PyObj {
  const view = new DataView(pkl.buffer, pkl.byteOffset, pkl.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const stack: (PyObj | typeof MARK)[] = [];
  const memo = new Map<number, PyObj>();
  let pos = 0;
  let opAt = 0;

  const where = () => `${source}: data.pkl byte ${opAt}`;
  const corrupt = (what: string): never => {
    throw new TorchCheckpointError(`${where()}: corrupt pickle: ${what}`);
  };
  const refuse = (what: string): never => {
    throw new TorchPickleRefusedError(
      `${where()}: the checkpoint asks for ${what}; latentwatch reads only tensors and state dicts ` +
        `(allowed globals: ${
          ALLOWED_GLOBALS.join(", ")
        }). Refused; nothing from the file was executed.`,
    );
  };
  const need = (n: number) => {
    if (pos + n > pkl.length) corrupt(`expected ${n} more bytes, found ${pkl.length - pos}`);
  };
  const pop = (): PyObj => {
    const v = stack.pop();
    if (v === undefined) return corrupt("stack underflow");
    if (v === MARK) return corrupt("unexpected MARK on the stack");
    return v;
  };
  const top = (): PyObj => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) return corrupt("expected an object on the stack");
    return v;
  };
  const popMark = (): PyObj[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) return corrupt("no MARK on the stack");
    const items = stack.splice(at) as PyObj[];
    items.shift();
    return items;
  };
  const readLine = (): string => {
    const end = pkl.indexOf(0x0a, pos);
    if (end < 0) return corrupt("unterminated line");
    const s = new TextDecoder("latin1").decode(pkl.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const str = (n: number): string => {
    need(n);
    let s: string;
    try {
      s = utf8.decode(pkl.subarray(pos, pos + n));
    } catch {
      return corrupt("string is not valid UTF-8");
    }
    pos += n;
    return s;
  };
  const resolve = (module: string, name: string): PyObj => {
    const full = `${module}.${name}`;
    if (CALLABLE_GLOBALS.has(full)) return new PyGlobal(full);
    if (Object.hasOwn(STORAGE_TYPES, full)) return new PyGlobal(full);
    if (module === "torch" && DTYPE_GLOBALS.has(name)) return new DtypeObj(full);
    return refuse(`the global ${full}`);
  };
  const key = (k: PyObj): string => {
    if (typeof k === "string") return k;
    if (typeof k === "number" || typeof k === "boolean" || k === null) return String(k);
    return corrupt(`dict key must be a string, number, boolean or None, found ${describe(k)}`);
  };
  const setItem = (d: PyObj, k: PyObj, v: PyObj) => {
    if (!(d instanceof PyDict)) return corrupt(`SETITEM on ${describe(d)}, expected a dict`);
    d.map.set(key(k), v);
  };
  const call = (fn: PyObj, args: PyObj): PyObj => {
    if (!(fn instanceof PyGlobal)) return refuse(`a call of ${describe(fn)} (REDUCE)`);
    if (!(args instanceof PyTuple)) return corrupt(`REDUCE arguments must be a tuple`);
    const a = args.items;
    switch (fn.name) {
      case "collections.OrderedDict": {
        if (a.length !== 0) return refuse(`collections.OrderedDict called with arguments`);
        return new PyDict();
      }
      case "torch._utils._rebuild_tensor_v2":
        return rebuildTensor(a, source, where(), storages);
      case "torch._utils._rebuild_parameter": {
        // Parameter(data, requires_grad, backward_hooks): only the data matters here.
        const data = a[0];
        if (!isTensor(data)) return corrupt(`_rebuild_parameter expects a tensor`);
        return data;
      }
    }
    return refuse(`a call of ${fn.name} (a storage type cannot be called)`);
  };

  if (pkl.length === 0) corrupt("data.pkl is empty");
  for (;;) {
    opAt = pos;
    if (pos >= pkl.length) corrupt("ran out of bytes before STOP");
    const op = pkl[pos++];
    switch (op) {
      case OP.PROTO:
        need(1);
        if (pkl[pos] > 5) corrupt(`unsupported pickle protocol ${pkl[pos]}, expected 2 to 5`);
        pos += 1;
        break;
      case OP.FRAME: // framing only groups bytes for the reader; the content follows inline
        need(8);
        pos += 8;
        break;
      case OP.STOP:
        if (stack.length !== 1) {
          corrupt(`STOP with ${stack.length} objects on the stack, expected 1`);
        }
        return pop();
      case OP.MARK:
        stack.push(MARK);
        break;
      case OP.EMPTY_DICT:
        stack.push(new PyDict());
        break;
      case OP.EMPTY_LIST:
        stack.push([]);
        break;
      case OP.EMPTY_TUPLE:
        stack.push(new PyTuple([]));
        break;
      case OP.TUPLE1:
        stack.push(new PyTuple([pop()]));
        break;
      case OP.TUPLE2: {
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case OP.TUPLE:
        stack.push(new PyTuple(popMark()));
        break;
      case OP.BINPUT:
        need(1);
        memo.set(pkl[pos++], top());
        break;
      case OP.LONG_BINPUT:
        need(4);
        memo.set(view.getUint32(pos, true), top());
        pos += 4;
        break;
      case OP.MEMOIZE:
        memo.set(memo.size, top());
        break;
      case OP.BINGET:
      case OP.LONG_BINGET: {
        let i: number;
        if (op === OP.BINGET) {
          need(1);
          i = pkl[pos++];
        } else {
          need(4);
          i = view.getUint32(pos, true);
          pos += 4;
        }
        if (!memo.has(i)) corrupt(`memo slot ${i} was never written`);
        stack.push(memo.get(i)!);
        break;
      }
      case OP.BININT:
        need(4);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      case OP.BININT1:
        need(1);
        stack.push(pkl[pos++]);
        break;
      case OP.BININT2:
        need(2);
        stack.push(view.getUint16(pos, true));
        pos += 2;
        break;
      case OP.LONG1: {
        need(1);
        const n = pkl[pos++];
        need(n);
        // Little-endian two's complement of n bytes.
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(pkl[pos + i]);
        if (n > 0 && pkl[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          corrupt(`integer ${v} is outside the range latentwatch can represent exactly`);
        }
        stack.push(Number(v));
        break;
      }
      case OP.BINFLOAT:
        need(8);
        stack.push(view.getFloat64(pos, false)); // big-endian, per the pickle spec
        pos += 8;
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.NONE:
        stack.push(null);
        break;
      case OP.SHORT_BINUNICODE:
        need(1);
        stack.push(str(pkl[pos++]));
        break;
      case OP.BINUNICODE: {
        need(4);
        const n = view.getUint32(pos, true);
        pos += 4;
        stack.push(str(n));
        break;
      }
      case OP.BINUNICODE8: {
        need(8);
        const n = Number(view.getBigUint64(pos, true));
        pos += 8;
        stack.push(str(n));
        break;
      }
      case OP.SETITEM: {
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        if (items.length % 2) corrupt("SETITEMS with an odd number of items");
        const d = top();
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        break;
      }
      case OP.APPEND: {
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) corrupt(`APPEND to ${describe(l)}, expected a list`);
        (l as PyObj[]).push(v);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) corrupt(`APPENDS to ${describe(l)}, expected a list`);
        (l as PyObj[]).push(...items);
        break;
      }
      case OP.GLOBAL: {
        const module = readLine();
        const name = readLine();
        stack.push(resolve(module, name));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          corrupt("STACK_GLOBAL expects two strings");
        }
        stack.push(resolve(module as string, name as string));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        stack.push(call(fn, args));
        break;
      }
      case OP.BUILD: {
        // Only OrderedDict state (a module state dict's `_metadata`) is accepted,
        // and ignored: it records module versions, not weights.
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict)) refuse(`BUILD (setting the state) of ${describe(obj)}`);
        if (!(state instanceof PyDict) && state !== null) {
          refuse(`BUILD of a dict with ${describe(state)} as its state`);
        }
        break;
      }
      case OP.BINPERSID: {
        const pid = pop();
        stack.push(storageRef(pid, where()));
        break;
      }
      default: {
        const name = REFUSED_OPCODES[op];
        if (name) refuse(`the pickle opcode ${name} (0x${op.toString(16)})`);
        corrupt(`unknown pickle opcode 0x${op.toString(16).padStart(2, "0")}`);
      }
    }
  }
}

function isTensor(v: PyObj): v is TorchTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "kind" in v &&
    v.kind === "tensor";
}

function describe(v: PyObj): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return "a list";
  if (v instanceof PyTuple) return "a tuple";
  if (v instanceof PyDict) return "a dict";
  if (v instanceof PyGlobal) return v.name;
  if (v instanceof StorageRef) return "a storage";
  if (v instanceof DtypeObj) return v.name;
  if (isTensor(v)) return "a tensor";
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** `('storage', torch.FloatStorage, key, location, numel)` as torch's persistent_id writes it. */
function storageRef(pid: PyObj, where: string): StorageRef {
  const bad = (what: string): never => {
    throw new TorchCheckpointError(
      `${where}: persistent id ${what}; expected ('storage', <storage type>, key, location, numel)`,
    );
  };
  if (!(pid instanceof PyTuple)) return bad(`is ${describe(pid)}`);
  const [tag, type, key, _location, numel] = pid.items;
  if (tag !== "storage" || pid.items.length !== 5) return bad(`has the wrong form`);
  if (!(type instanceof PyGlobal) || !Object.hasOwn(STORAGE_TYPES, type.name)) {
    return bad(`names storage type ${describe(type)}`);
  }
  if (typeof key !== "string") return bad(`has a non-string key`);
  if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) {
    return bad(`has element count ${describe(numel)}`);
  }
  return new StorageRef(STORAGE_TYPES[type.name], key, numel);
}

/** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`. */
function rebuildTensor(
  a: PyObj[],
  source: string,
  where: string,
  storages: Storages,
): TorchTensor {
  const fail = (what: string): never => {
    throw new TorchCheckpointError(`${where}: _rebuild_tensor_v2: ${what}`);
  };
  if (a.length < 4) fail(`expected at least 4 arguments, found ${a.length}`);
  const [storage, offset, size, stride] = a;
  if (!(storage instanceof StorageRef)) {
    return fail(`expected a storage, found ${describe(storage)}`);
  }
  const ints = (v: PyObj, what: string): number[] => {
    if (!(v instanceof PyTuple)) return fail(`${what} must be a tuple, found ${describe(v)}`);
    return v.items.map((d) =>
      typeof d === "number" && Number.isSafeInteger(d) && d >= 0
        ? d
        : fail(`${what} must hold non-negative integers, found ${describe(d)}`)
    );
  };
  const shape = ints(size, "size");
  const strides = ints(stride, "stride");
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
    return fail(`storage offset must be a non-negative integer, found ${describe(offset)}`);
  }
  if (strides.length !== shape.length) {
    fail(`size (${shape}) and stride (${strides}) differ in length`);
  }
  const count = shape.reduce((x, y) => x * y, 1);
  // Row-major (C-contiguous) strides; dimensions of size 1 may carry any stride.
  let expect = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && count > 0 && strides[d] !== expect) {
      throw new TorchCheckpointError(
        `${source}: tensor of size (${shape}) has stride (${strides}), expected the contiguous stride; ` +
          `re-save it with tensor.contiguous() (latentwatch reads only contiguous tensors)`,
      );
    }
    expect *= shape[d];
  }
  if (offset + count > storage.numel) {
    fail(
      `elements ${offset}..${
        offset + count
      } of size (${shape}) run past storage ${storage.key}, which holds ${storage.numel}`,
    );
  }
  const bytes = storages.get(storage);
  const size1 = ITEMSIZE[storage.dtype];
  const raw = bytes.subarray(offset * size1, (offset + count) * size1);
  return { kind: "tensor", dtype: storage.dtype, shape, data: widen(raw, storage.dtype, count) };
}

/** Little-endian storage bytes to f32; a view when the bytes are aligned f32. */
function widen(raw: Uint8Array, dtype: TorchDtype, count: number): Float32Array {
  if (dtype === "float32" && raw.byteOffset % 4 === 0) {
    return new Float32Array(raw.buffer, raw.byteOffset, count);
  }
  // Copy into an aligned buffer first (explicitly: Buffer.slice would be a view).
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  const b = copy.buffer;
  switch (dtype) {
    case "float32":
      return new Float32Array(b, 0, count);
    case "float16":
      return f16ToF32(new Uint16Array(b, 0, count));
    case "bfloat16":
      return bf16ToF32(new Uint16Array(b, 0, count));
    case "float64":
      return Float32Array.from(new Float64Array(b, 0, count));
    case "int64":
      return Float32Array.from(new BigInt64Array(b, 0, count), (v) => Number(v));
    case "int32":
      return Float32Array.from(new Int32Array(b, 0, count));
    case "uint8":
      return Float32Array.from(copy);
  }
}

/** Machine values to the public {@linkcode TorchValue} shapes. */
function toValue(v: PyObj, where: string): TorchValue {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map((x) => toValue(x, where));
  if (v instanceof PyTuple) return v.items.map((x) => toValue(x, where));
  if (v instanceof PyDict) {
    const out: TorchDict = new Map();
    for (const [k, x] of v.map) out.set(k, toValue(x, where));
    return out;
  }
  if (v instanceof DtypeObj) return v.name;
  if (isTensor(v)) return v;
  throw new TorchCheckpointError(`${where}: the checkpoint holds ${describe(v)} outside a tensor`);
}

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
