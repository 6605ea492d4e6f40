import assert from "node:assert/strict";
import { f32ToBf16, f32ToF16 } from "../core/dtype.ts";
import {
  readSafetensors,
  rearrange,
  SafetensorsError,
  SafetensorsReader,
  type SafetensorsTensor,
  tensorToF32,
  writeSafetensors,
} from "./safetensors.ts";

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

Deno.test("SafetensorsReader reads ranges from disk: as stored, transposed, a middle-axis slice, every float dtype", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.safetensors`;
    // Rows bigger than a 16 MiB chunk would need many reads; 3000 × 3001 bf16 ≈ 18 MB crosses one boundary.
    const [R, C] = [3000, 3001];
    const big = new Float32Array(R * C);
    for (let i = 0; i < big.length; i++) big[i] = ((i * 7) % 251) / 4 - 32; // 8 significant bits: exact in bf16
    const small = new Float32Array([1.5, -2, 0.25, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const bits = (v: Float32Array, d: "f16" | "bf16") =>
      new Uint8Array((d === "f16" ? f32ToF16(v) : f32ToBf16(v)).buffer);
    await Deno.writeFile(
      path,
      writeSafetensors({
        big: { dtype: "BF16", shape: [R, C], data: bits(big, "bf16") },
        f32: { dtype: "F32", shape: [3, 4], data: new Uint8Array(small.buffer) },
        f16: { dtype: "F16", shape: [2, 3, 2], data: bits(small, "f16") },
        f64: { dtype: "F64", shape: [12], data: new Uint8Array(Float64Array.from(small).buffer) },
      }),
    );
    const r = await SafetensorsReader.open(path);
    try {
      assert.deepEqual([...r.entries.keys()], ["big", "f32", "f16", "f64"]);
      let bytes = 0;
      const wide = await r.readF32("big", "as-stored", (n) => (bytes += n));
      assert.equal(bytes, R * C * 2);
      // A plain loop: node:assert's deepEqual is very slow on millions of elements.
      const same = (a: Float32Array, b: Float32Array) =>
        a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
      assert.ok(same(wide, big));
      const t = await r.readF32("big", "transposed");
      assert.ok(same(t, rearrange(big, [R, C], "transposed")));
      assert.equal(t[5 * R + 7], big[7 * C + 5]);
      assert.deepEqual(await r.readF32("f32"), small);
      assert.deepEqual([...(await r.readF32("f32", "transposed"))], [
        1.5,
        4,
        8,
        -2,
        5,
        9,
        0.25,
        6,
        10,
        3,
        7,
        11,
      ]);
      // [2, 3, 2][:, 1, :] = rows (0.25, 3) and (8, 9)
      assert.deepEqual([...(await r.readF32("f16", { select: 1 }))], [0.25, 3, 8, 9]);
      assert.deepEqual(await r.readF32("f64"), small);
      await assert.rejects(r.readF32("f32", { select: 0 }), SafetensorsError);
      await assert.rejects(r.readF32("nope"), /no tensor 'nope'/);
    } finally {
      r.close();
    }
    // Truncated: the header is checked against the file size before any tensor is read.
    const whole = await Deno.readFile(path);
    await Deno.writeFile(path, whole.subarray(0, whole.byteLength - 100));
    await assert.rejects(SafetensorsReader.open(path), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, /t\.safetensors: tensor '\w+'.*out of range.*truncated/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
