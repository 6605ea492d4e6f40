/**
 * The values the restricted pickle machine (pickle_machine.ts) builds: tuples,
 * dicts, the allowed globals, storage references, dtype objects and tensors,
 * with how an error message names each.
 *
 * @module
 */
import type { TorchDtype, TorchTensor } from "./torch_values.ts";

/** A Python tuple (kept apart from lists so REDUCE can insist on one). */
export class PyTuple {
  constructor(readonly items: PyObj[]) {}
}
/** A dict or OrderedDict under construction. */
export class PyDict {
  readonly map = new Map<string, PyObj>();
}
/** A resolved, allowed global. */
export class PyGlobal {
  constructor(readonly name: string) {}
}
/** A storage named by a persistent id: `('storage', type, key, location, numel)`. */
export class StorageRef {
  constructor(readonly dtype: TorchDtype, readonly key: string, readonly numel: number) {}
}
/** A `torch.<dtype>` object. */
export class DtypeObj {
  constructor(readonly name: string) {}
}
export type PyObj =
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

/** Decoded pickle plus the storages it references, resolved lazily. */
export interface Storages {
  get(ref: StorageRef): Uint8Array;
}

/**
 * Whether a machine value is a rebuilt tensor.
 *
 * @example
 * ```ts
 * isTensor({ kind: "tensor", dtype: "float32", shape: [1], data: new Float32Array(1) }); // true
 * ```
 */
export function isTensor(v: PyObj): v is TorchTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && "kind" in v &&
    v.kind === "tensor";
}

/**
 * A machine value as an error message names it.
 *
 * @example
 * ```ts
 * describe(new PyTuple([])); // "a tuple"
 * describe(3); // "number 3"
 * ```
 */
export function describe(v: PyObj): string {
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
