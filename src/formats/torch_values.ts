/**
 * What a PyTorch checkpoint read by latentwatch holds (tensors widened to
 * f32, numbers, strings, lists, dicts), the errors a read raises, and the
 * storage types and element sizes torch pickles its tensors with.
 *
 * @module
 */

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

/** Bytes per element of each storage type. */
export const ITEMSIZE: Record<TorchDtype, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  uint8: 1,
};

/** Storage classes torch pickles by reference inside a storage's persistent id. */
export const STORAGE_TYPES: Record<string, TorchDtype> = {
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
