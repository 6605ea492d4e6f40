import assert from "node:assert/strict";
import {
  readSafetensors,
  SafetensorsError,
  type SafetensorsTensor,
  tensorToF32,
} from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";

/** Build a file by hand: header JSON exactly as given, then `data`. */
function rawFile(headerJson: string, data: number[] = [], lenOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  const out = new Uint8Array(8 + json.byteLength + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lenOverride ?? json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

function f32Bytes(...v: number[]): number[] {
  return [...new Uint8Array(new Float32Array(v).buffer)];
}

function throwsWith(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
    for (const p of parts) assert.ok(e.message.includes(p), `'${e.message}' lacks '${p}'`);
    return true;
  });
}

Deno.test("readSafetensors reads a hand-built file with metadata and two tensors", () => {
  const header = JSON.stringify({
    __metadata__: { format: "pt" },
    a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    b: { dtype: "BF16", shape: [1, 2], data_offsets: [8, 12] },
  });
  // bf16 0x3f80 = 1.0, 0xc000 = -2.0 (little-endian bytes)
  const file = readSafetensors(
    rawFile(header, [...f32Bytes(1.5, -3), 0x80, 0x3f, 0x00, 0xc0]),
    "x",
  );
  assert.deepEqual(file.metadata, { format: "pt" });
  assert.deepEqual([...file.tensors.keys()], ["a", "b"]);
  assert.deepEqual([...tensorToF32(file.tensors.get("a")!)], [1.5, -3]);
  const b = file.tensors.get("b")!;
  assert.equal(b.dtype, "BF16");
  assert.deepEqual(b.shape, [1, 2]);
  assert.deepEqual([...tensorToF32(b)], [1, -2]);
});

Deno.test("tensorToF32 widens F16, F64, I32 and I64", () => {
  // f16 0x3555 = 0.333251953125 exactly; 0xfc00 = -inf
  const f16: SafetensorsTensor = {
    dtype: "F16",
    shape: [2],
    data: new Uint8Array([0x55, 0x35, 0, 0xfc]),
  };
  assert.deepEqual([...tensorToF32(f16)], [0.333251953125, -Infinity]);
  const f64: SafetensorsTensor = {
    dtype: "F64",
    shape: [1],
    data: new Uint8Array(new Float64Array([0.1]).buffer),
  };
  assert.equal(tensorToF32(f64)[0], Math.fround(0.1));
  const i32: SafetensorsTensor = {
    dtype: "I32",
    shape: [2],
    data: new Uint8Array(new Int32Array([-7, 3]).buffer),
  };
  assert.deepEqual([...tensorToF32(i32)], [-7, 3]);
  const i64: SafetensorsTensor = {
    dtype: "I64",
    shape: [1],
    data: new Uint8Array(new BigInt64Array([-5n]).buffer),
  };
  assert.deepEqual([...tensorToF32(i64)], [-5]);
});

Deno.test("tensorToF32 copes with odd byte offsets", () => {
  const buf = new Uint8Array(9);
  buf.set(f32Bytes(2.25, 4), 1);
  const t: SafetensorsTensor = { dtype: "F32", shape: [2], data: buf.subarray(1) };
  assert.deepEqual([...tensorToF32(t)], [2.25, 4]);
});

Deno.test("readSafetensors rejects malformed files with precise messages", () => {
  const t = (o: unknown) => JSON.stringify(o);
  throwsWith(() => readSafetensors(new Uint8Array(3), "f.st"), "f.st", "at least 8 bytes");
  throwsWith(() => readSafetensors(rawFile("{}", [], 100), "f.st"), "f.st", "runs past the end");
  throwsWith(
    () => readSafetensors(rawFile("{}", [], 200_000_000), "f.st"),
    "exceeds the limit",
  );
  throwsWith(() => readSafetensors(rawFile("{not json"), "f.st"), "f.st", "not valid UTF-8 JSON");
  throwsWith(() => readSafetensors(rawFile("[1]"), "f.st"), "must be a JSON object");
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ w: { dtype: "Q4", shape: [1], data_offsets: [0, 4] } }), f32Bytes(1)),
        "f.st",
      ),
    "f.st",
    "'w'",
    'unsupported dtype "Q4"',
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ w: { dtype: "F32", shape: [1], data_offsets: [0, 8] } }), f32Bytes(1)),
        "f.st",
      ),
    "'w'",
    "out of range",
    "4 bytes",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ w: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }), f32Bytes(1)),
        "f.st",
      ),
    "'w'",
    "needs 8 bytes",
    "(4 bytes)",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }), f32Bytes(1)),
        "f.st",
      ),
    "'w'",
    "non-negative integers",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ w: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }), f32Bytes(1)),
        "f.st",
      ),
    "begin > end",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(
          t({
            a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
          }),
          f32Bytes(1, 2),
        ),
        "f.st",
      ),
    "f.st",
    "'b'",
    "overlaps tensor 'a'",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }), f32Bytes(1, 2)),
        "f.st",
      ),
    "'a'",
    "hole",
  );
  throwsWith(
    () =>
      readSafetensors(
        rawFile(t({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }), f32Bytes(1, 2)),
        "f.st",
      ),
    "cover 4 bytes",
    "has 8",
  );
  throwsWith(
    () => readSafetensors(rawFile(t({ __metadata__: { n: 1 } })), "f.st"),
    "__metadata__['n']",
  );
});

Deno.test("readSafetensors + tensorToF32 work on a Node Buffer at an odd offset", async () => {
  const { Buffer } = await import("node:buffer");
  const file = writeSafetensors({
    h: { dtype: "F16", shape: [1], data: new Uint8Array([0, 0x3c]) }, // 1.0, 2 bytes
    w: { dtype: "F64", shape: [1], data: new Uint8Array(new Float64Array([-2.5]).buffer) },
  });
  const slab = Buffer.alloc(file.byteLength + 3);
  slab.set(file, 3);
  const buf = slab.subarray(3); // a Buffer view, byteOffset 3 into the slab
  const read = readSafetensors(buf, "buf");
  assert.deepEqual([...tensorToF32(read.tensors.get("h")!)], [1]);
  assert.deepEqual([...tensorToF32(read.tensors.get("w")!)], [-2.5]);
});
