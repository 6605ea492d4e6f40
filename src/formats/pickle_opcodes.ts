/**
 * The pickle opcodes the restricted machine runs and refuses (with the names
 * its errors give), and the allow-list of globals it resolves: tensor
 * rebuilding, storage types, dtypes and `OrderedDict`.
 *
 * @module
 */
import { STORAGE_TYPES } from "./torch_values.ts";

/** `torch.float32`-style dtype objects (pickled by reference, e.g. in configs). */
export const DTYPE_GLOBALS = new Set([
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

/** Globals the machine may call (REDUCE). */
export const CALLABLE_GLOBALS = new Set([
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
export const OP = {
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
export const REFUSED_OPCODES: Record<number, string> = {
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
