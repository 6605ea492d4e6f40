/**
 * Tensors out of a checkpoint's storages: the persistent id that names a
 * storage, `_rebuild_tensor_v2`'s checks (contiguous, within its storage),
 * and the widening of each storage type to f32.
 *
 * @module
 */
import { bf16ToF32, f16ToF32 } from "../core/dtype.ts";
import {
  describe,
  PyGlobal,
  type PyObj,
  PyTuple,
  StorageRef,
  type Storages,
} from "./pickle_values.ts";
import {
  ITEMSIZE,
  STORAGE_TYPES,
  TorchCheckpointError,
  type TorchDtype,
  type TorchTensor,
} from "./torch_values.ts";

/**
 * The storage a persistent id names: `('storage', torch.FloatStorage, key,
 * location, numel)` as torch's persistent_id writes it.
 *
 * @example
 * ```ts
 * import { PyGlobal, PyTuple } from "./pickle_values.ts";
 * const pid = new PyTuple(["storage", new PyGlobal("torch.FloatStorage"), "0", "cpu", 6]);
 * storageRef(pid, "x.pt"); // StorageRef { dtype: "float32", key: "0", numel: 6 }
 * ```
 */
export function storageRef(pid: PyObj, where: string): StorageRef {
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

/**
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata])`: a contiguous tensor within its storage,
 * widened to f32.
 *
 * @example
 * ```ts
 * import { PyTuple, StorageRef } from "./pickle_values.ts";
 * const bytes = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
 * const t = rebuildTensor(
 *   [new StorageRef("float32", "0", 6), 0, new PyTuple([2, 3]), new PyTuple([3, 1])],
 *   "x.pt",
 *   "x.pt: data.pkl byte 40",
 *   { get: () => bytes },
 * );
 * t.shape; // [2, 3]
 * ```
 */
export function rebuildTensor(
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
