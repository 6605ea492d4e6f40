import assert from "node:assert/strict";
import { NpyError, readNpy, writeNpy } from "./npy.ts";

function hex(s: string): number[] {
  return s.match(/../g)!.map((b) => parseInt(b, 16));
}

/** A file laid out like numpy's: magic, version, length field, header, data. */
function npyFile(version: 1 | 2 | 3, header: string, data: number[]): Uint8Array {
  const lenBytes = version === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lenBytes + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  out.set(new TextEncoder().encode(header), 8 + lenBytes);
  out.set(data, 8 + lenBytes + header.length);
  return out;
}

// Golden output of numpy 2.4: np.save(b, np.array([[1.5, -2], [0.25, 3]], dtype='<f4'))
const GOLDEN_F4_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }".padEnd(117) +
  "\n";
const GOLDEN_F4_DATA = "0000c03f000000c00000803e00004040";

Deno.test("writeNpy matches numpy.save byte for byte (f32 and f16)", () => {
  const f4 = writeNpy(new Float32Array([1.5, -2, 0.25, 3]), [2, 2], "f32");
  assert.deepEqual([...f4], [...npyFile(1, GOLDEN_F4_HEADER, hex(GOLDEN_F4_DATA))]);
  assert.equal(f4.byteLength, 144);
  // np.save(b, np.array([1, -0.5, 65504], dtype='<f2')): 134 bytes
  const f2 = writeNpy(new Float32Array([1, -0.5, 65504]), [3], "f16");
  const h2 = "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }".padEnd(117) + "\n";
  assert.deepEqual([...f2], [...npyFile(1, h2, hex("003c00b8ff7b"))]);
});

Deno.test("readNpy reads version 1.0 f32 and f16 arrays", () => {
  const a = readNpy(npyFile(1, GOLDEN_F4_HEADER, hex(GOLDEN_F4_DATA)), "a.npy");
  assert.deepEqual(a.shape, [2, 2]);
  assert.equal(a.dtype, "f32");
  assert.deepEqual([...a.data], [1.5, -2, 0.25, 3]);
  const h = "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }\n";
  const b = readNpy(npyFile(1, h, hex("003c00b8ff7b")), "b.npy");
  assert.deepEqual(b.shape, [3]);
  assert.equal(b.dtype, "f16");
  assert.deepEqual([...b.data], [1, -0.5, 65504]);
});

Deno.test("readNpy transposes a version 2.0 fortran-order array", () => {
  // numpy: write_array(b, np.array([[1,2,3],[4,5,6]], '<f4', order='F'), version=(2,0))
  // stores column-major: 1 4 2 5 3 6
  const h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }".padEnd(115) + "\n";
  const a = readNpy(
    npyFile(2, h, hex("0000803f00008040000000400000a040000040400000c040")),
    "f.npy",
  );
  assert.deepEqual(a.shape, [2, 3]);
  assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 6]);
});

Deno.test("readNpy transposes a 3-d fortran-order array", () => {
  // shape (2, 2, 2); element (i, j, k) = 100i + 10j + k stored with i fastest
  const colMajor: number[] = [];
  for (let k = 0; k < 2; k++) {
    for (let j = 0; j < 2; j++) for (let i = 0; i < 2; i++) colMajor.push(100 * i + 10 * j + k);
  }
  const bytes = [...new Uint8Array(new Float32Array(colMajor).buffer)];
  const h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 2), }\n";
  const a = readNpy(npyFile(1, h, bytes), "f.npy");
  assert.deepEqual([...a.data], [0, 1, 10, 11, 100, 101, 110, 111]);
});

Deno.test("readNpy reads version 3.0 f8, rounding to f32", () => {
  const h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }\n";
  const a = readNpy(
    npyFile(3, h, [...new Uint8Array(new Float64Array([0.1, -4]).buffer)]),
    "c.npy",
  );
  assert.equal(a.dtype, "f64");
  assert.deepEqual([...a.data], [Math.fround(0.1), -4]);
});

Deno.test("writeNpy output reads back (2-d f16, rounding to nearest even)", () => {
  // 1 + 2^-11 is halfway between f16 1 and 1 + 2^-10: ties to even → 1.
  const bytes = writeNpy(new Float32Array([1 + 2 ** -11, 2, 3, 4, 5, 6]), [3, 2], "f16");
  const a = readNpy(bytes, "mem");
  assert.deepEqual(a.shape, [3, 2]);
  assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 6]);
  assert.equal((10 + new DataView(bytes.buffer).getUint16(8, true)) % 64, 0);
});

function throwsWith(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof NpyError, `expected NpyError, got ${e}`);
    for (const p of parts) assert.ok(e.message.includes(p), `'${e.message}' lacks '${p}'`);
    return true;
  });
}

Deno.test("readNpy rejects bad files with messages naming the file", () => {
  throwsWith(() => readNpy(new Uint8Array([1, 2, 3]), "x.npy"), "x.npy", "magic");
  const bad = npyFile(1, "{}", []);
  bad[6] = 4;
  throwsWith(() => readNpy(bad, "x.npy"), "x.npy", "version 4.0");
  throwsWith(
    () =>
      readNpy(
        npyFile(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", [0, 0, 0, 0]),
        "x.npy",
      ),
    "x.npy",
    `unsupported dtype ">f4"`,
  );
  throwsWith(
    () =>
      readNpy(
        npyFile(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", [0, 0, 0, 0]),
        "x.npy",
      ),
    `"<i4"`,
  );
  throwsWith(
    () =>
      readNpy(
        npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", [0, 0, 0, 0]),
        "x.npy",
      ),
    "x.npy",
    "needs 8 data bytes, found 4",
  );
  throwsWith(
    () => readNpy(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,", []), "x.npy"),
    "malformed .npy header",
  );
  throwsWith(
    () => readNpy(npyFile(1, "__import__('os')", []), "x.npy"),
    "malformed .npy header",
  );
  throwsWith(() => writeNpy(new Float32Array(3), [2, 2], "f32"), "holds 4 values, found 3");
});

Deno.test("readNpy works on a Node Buffer at an odd offset", async () => {
  const { Buffer } = await import("node:buffer");
  const file = writeNpy(new Float32Array([1.5, -2]), [1, 2], "f32");
  const slab = Buffer.alloc(file.byteLength + 5);
  slab.set(file, 5);
  assert.deepEqual([...readNpy(slab.subarray(5), "buf").data], [1.5, -2]);
});
