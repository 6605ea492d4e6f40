import assert from "node:assert/strict";
import { readSafetensors, SafetensorsError, tensorToF32 } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";

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

Deno.test("writeSafetensors produces the upstream byte layout", () => {
  const bytes = writeSafetensors({
    w: { dtype: "F32", shape: [1], data: new Uint8Array(f32Bytes(1)) },
  });
  // {"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} is 54 bytes; pad to 56.
  const json = '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
  assert.equal(json.length, 54);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getBigUint64(0, true), 56n);
  assert.equal(new TextDecoder().decode(bytes.subarray(8, 64)), json + "  ");
  assert.deepEqual([...bytes.subarray(64)], [0, 0, 0x80, 0x3f]);
  assert.equal(bytes.byteLength, 68);
});

Deno.test("writeSafetensors round-trips through readSafetensors in order", () => {
  const tensors = {
    z: { dtype: "F16" as const, shape: [3], data: new Uint8Array([0, 0x3c, 0, 0x40, 0, 0xc2]) },
    a: { dtype: "F32" as const, shape: [2, 1], data: new Uint8Array(f32Bytes(7, 8)) },
    e: { dtype: "F32" as const, shape: [0], data: new Uint8Array(0) },
  };
  const file = readSafetensors(writeSafetensors(tensors, { k: "v" }), "mem");
  assert.deepEqual([...file.tensors.keys()], ["z", "a", "e"]);
  assert.deepEqual([...tensorToF32(file.tensors.get("z")!)], [1, 2, -3]);
  assert.deepEqual([...tensorToF32(file.tensors.get("a")!)], [7, 8]);
  assert.deepEqual(file.metadata, { k: "v" });
  assert.equal(tensorToF32(file.tensors.get("e")!).length, 0);
});

Deno.test("writeSafetensors rejects a data length that does not match the shape", () => {
  throwsWith(
    () => writeSafetensors({ w: { dtype: "F32", shape: [2], data: new Uint8Array(4) } }),
    "'w'",
    "needs 8 bytes",
    "found 4",
  );
});
