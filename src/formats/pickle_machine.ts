/**
 * The RESTRICTED pickle machine that reads a checkpoint's `data.pkl`: it
 * implements only the opcodes torch state dicts use and resolves only the
 * allow-list of globals (pickle_opcodes.ts), each to a built-in TypeScript
 * implementation. Nothing named by the file is ever looked up or run: any
 * other global, and any opcode that would build or call something else
 * (`REFUSED_OPCODES`), stops the read with a `TorchPickleRefusedError`; a
 * byte that is no pickle opcode is a corrupt pickle (`TorchCheckpointError`).
 *
 * @module
 */
import {
  ALLOWED_GLOBALS,
  CALLABLE_GLOBALS,
  DTYPE_GLOBALS,
  OP,
  REFUSED_OPCODES,
} from "./pickle_opcodes.ts";
import {
  describe,
  DtypeObj,
  isTensor,
  PyDict,
  PyGlobal,
  type PyObj,
  PyTuple,
  type Storages,
} from "./pickle_values.ts";
import { rebuildTensor, storageRef } from "./torch_tensor.ts";
import {
  STORAGE_TYPES,
  TorchCheckpointError,
  type TorchDict,
  TorchPickleRefusedError,
  type TorchValue,
} from "./torch_values.ts";

const MARK = Symbol("mark");

/**
 * Run the restricted pickle machine over `pkl`.
 *
 * @param pkl the `data.pkl` bytes
 * @param source names the file in errors
 * @param storages resolves storage references to their raw bytes
 *
 * @example
 * ```ts
 * // protocol 2: an empty dict, then STOP
 * const none = { get(): Uint8Array { throw new Error("no storages"); } };
 * unpickle(Uint8Array.of(0x80, 0x02, 0x7d, 0x2e), "x.pt", none); // an empty PyDict
 * ```
 */
export function unpickle(pkl: Uint8Array, source: string, storages: Storages): PyObj {
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

/**
 * Machine values to the public {@linkcode TorchValue} shapes; `where` names
 * the file in the error for a value no checkpoint should hold.
 *
 * @example
 * ```ts
 * import { PyTuple } from "./pickle_values.ts";
 * toValue(new PyTuple([1, "a"]), "x.pt"); // [1, "a"]
 * ```
 */
export function toValue(v: PyObj, where: string): TorchValue {
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
